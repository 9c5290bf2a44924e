// event-vectors.mjs — nostr-tools as the independent side of negsync's event tests.
//
//   node event-vectors.mjs gen OK.jsonl REJECT.jsonl
//       Signs events with hard content (multi-byte UTF-8, emoji, astral
//       characters, U+2028/2029, every control char, quotes and backslashes,
//       100 KB content, 2000 tags, empty tags and content) and writes them as
//       JSON lines in negsync's key order, serialized by JSON.stringify, so
//       negsync must reproduce each line byte for byte. REJECT.jsonl holds
//       events nostr-tools signs but negsync must refuse: lone surrogates,
//       which JSON.stringify writes as \udXXX escapes and which are not UTF-8.
//
//   node event-vectors.mjs verify FILE.jsonl
//       Checks events negsync signed: verifyEvent accepts each, getEventHash
//       gives its id, and the line is exactly what JSON.stringify produces.
import { readFileSync, writeFileSync } from 'node:fs';
import { importPeer } from './peers.mjs';

const { finalizeEvent, generateSecretKey, getEventHash, verifyEvent } =
    await importPeer('nostr-tools', './pure');

// negsync's field order; JSON.stringify keeps insertion order.
const line = (e) => JSON.stringify({
    id: e.id, pubkey: e.pubkey, created_at: e.created_at, kind: e.kind,
    tags: e.tags, content: e.content, sig: e.sig,
});

const allControls = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join('');

const hardStrings = [
    '',
    'hello',
    'héllo wörld ünïcödé 中文 日本語 한국어 العربية',
    '🎉🔥👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈',
    '𝕳𝖊𝖑𝖑𝖔 𠜎𠜱 \u{10FFFF} \u{1F600}',
    'line\u2028separator\u2029paragraph',
    allControls,
    'a\u0000b\u0000',
    '"quoted" \\back\\slash\\ \\u0041 \\" / </script> \'',
    '\u007f\u0080\u009f\ufeff\uffff\ufffd',
    '{"name":"bob","about":"a\\nb"}',
    'tab\there\r\nnew\fform\bback',
];

function sign(sk, fields) {
    return finalizeEvent({ created_at: 1700000000, kind: 1, tags: [], content: '', ...fields }, sk);
}

function gen(okPath, rejectPath) {
    const sk = generateSecretKey();
    const events = [];

    events.push(sign(sk, { tags: [], content: '' }));
    hardStrings.forEach((s, i) => {
        events.push(sign(sk, { kind: i, content: s }));
        events.push(sign(sk, { kind: 1000 + i, tags: [['t', s], [s], ['x', s, s, '']], content: s }));
    });

    let big = '';
    while (big.length < 100 * 1024) big += 'ab"\\\n\u00e9🎉\u0001 ' + allControls;
    events.push(sign(sk, { kind: 30023, content: big, tags: [['d', big.slice(0, 500)]] }));

    const many = [];
    for (let i = 0; i < 2000; i++) many.push([i % 2 ? 'p' : 't', `value-${i}\t\u00fc`, 'wss://r']);
    events.push(sign(sk, { content: 'many tags', tags: many }));

    events.push(sign(sk, { created_at: 0, kind: 65535, content: 'min time, max kind' }));
    events.push(sign(sk, { created_at: Number.MAX_SAFE_INTEGER, content: 'max safe time' }));

    // finalizeEvent marks its result verified; check fresh copies, as a relay would.
    for (const e of events) {
        const copy = JSON.parse(line(e));
        if (!verifyEvent(copy) || getEventHash(copy) !== e.id) throw new Error(`self-check failed: ${e.id}`);
    }
    writeFileSync(okPath, events.map(line).join('\n') + '\n');

    // Lone surrogates: JSON.stringify escapes them, nostr-tools hashes that text and
    // signs; negsync refuses them because they are not Unicode scalar values.
    const reject = [
        sign(sk, { content: 'lone high \ud800 surrogate' }),
        sign(sk, { content: 'lone low \udc00' }),
        sign(sk, { content: 'reversed pair \ude00\ud83d' }),
        sign(sk, { tags: [['t', 'x\udbff']], content: 'in a tag' }),
    ];
    writeFileSync(rejectPath, reject.map(line).join('\n') + '\n');
    console.log(`wrote ${events.length} events to ${okPath}, ${reject.length} to ${rejectPath}`);
}

function verify(path) {
    const lines = readFileSync(path, 'utf8').split('\n').filter((l) => l.length > 0);
    let bad = 0;
    lines.forEach((text, i) => {
        const e = JSON.parse(text);
        const problems = [];
        if (getEventHash(e) !== e.id) problems.push('id differs from getEventHash');
        if (!verifyEvent(e)) problems.push('verifyEvent refuses it');
        if (line(e) !== text) problems.push('line differs from JSON.stringify');
        if (problems.length) {
            bad++;
            console.error(`FAIL ${path}:${i + 1}: ${problems.join(', ')}`);
        }
    });
    console.log(`nostr-tools: ${lines.length - bad} of ${lines.length} negsync-signed events verify`);
    if (lines.length === 0 || bad > 0) process.exit(1);
}

const [mode, a, b] = process.argv.slice(2);
if (mode === 'gen' && a && b) gen(a, b);
else if (mode === 'verify' && a) verify(a);
else {
    console.error('usage: event-vectors.mjs gen OK.jsonl REJECT.jsonl | verify FILE.jsonl');
    process.exit(2);
}

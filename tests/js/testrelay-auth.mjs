// testrelay-auth.mjs — the test relay's NIP-42 mode (--auth KINDS), driven by
// nostr-tools as a client that is not negsync.
//
//   node testrelay-auth.mjs gen DIR
//       Writes DIR/events.jsonl (kind 4 and 1059 events for the owner, kind 1
//       notes) and DIR/keys.json (the owner's and a stranger's secret keys, hex).
//
//   node testrelay-auth.mjs run URL DIR
//       Against a relay started with --auth 4,1059 --auth-pubkey OWNER:
//       AUTH on connect; REQ and NEG-OPEN over kind 4 refused with AUTH then
//       auth-required:; public kinds served; an ids REQ served without the DMs;
//       AUTH events with a wrong challenge, relay, kind, date or signature
//       refused with OK false; the owner's AUTH accepted and the DMs then
//       served by REQ and NEG-OPEN; a stranger's AUTH accepted but answered
//       restricted:; an EVENT of kind 4 refused before AUTH.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { importPeer } from './peers.mjs';

const { finalizeEvent, generateSecretKey, getPublicKey } = await importPeer('nostr-tools', './pure');
const { makeAuthEvent } = await importPeer('nostr-tools', './nip42');

const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (h) => Uint8Array.from(Buffer.from(h, 'hex'));

function gen(dir) {
    const owner = generateSecretKey(), other = generateSecretKey();
    const now = Math.floor(Date.now() / 1000);
    const lines = [];
    for (let i = 0; i < 3; i++)
        lines.push(finalizeEvent({ kind: 4, created_at: now - 100 - i, tags: [['p', getPublicKey(owner)]], content: `dm ${i}` }, owner));
    for (let i = 0; i < 2; i++)
        lines.push(finalizeEvent({ kind: 1059, created_at: now - 200 - i, tags: [['p', getPublicKey(owner)]], content: `wrap ${i}` }, other));
    for (let i = 0; i < 3; i++)
        lines.push(finalizeEvent({ kind: 1, created_at: now - 300 - i, tags: [], content: `note ${i}` }, other));
    writeFileSync(join(dir, 'events.jsonl'), lines.map((e) => JSON.stringify(e)).join('\n') + '\n');
    writeFileSync(join(dir, 'keys.json'), JSON.stringify({ owner: hex(owner), other: hex(other), ownerPub: getPublicKey(owner) }));
}

// One websocket with a queue of parsed messages and a deadline on every wait.
async function connect(url) {
    const ws = new WebSocket(url);
    const queue = [], waiters = [];
    ws.onmessage = (m) => {
        queue.push(JSON.parse(m.data));
        while (waiters.length) waiters.shift()();
    };
    await new Promise((ok, bad) => { ws.onopen = ok; ws.onerror = () => bad(new Error(`cannot connect to ${url}`)); });
    return {
        send: (msg) => ws.send(JSON.stringify(msg)),
        close: () => ws.close(),
        async next(what, ms = 5000) {
            const deadline = Date.now() + ms;
            while (!queue.length) {
                const left = deadline - Date.now();
                if (left <= 0) throw new Error(`timed out waiting for ${what}`);
                await new Promise((ok) => { const t = setTimeout(ok, left); waiters.push(() => { clearTimeout(t); ok(); }); });
            }
            return queue.shift();
        },
    };
}

function expect(cond, what) {
    if (!cond) throw new Error(what);
}

// Reads messages up to EOSE / CLOSED of sub: [events, closingMessage].
async function collect(c, sub) {
    const events = [];
    for (;;) {
        const m = await c.next(`the end of ${sub}`);
        if (m[0] === 'EVENT' && m[1] === sub) events.push(m[2]);
        else if ((m[0] === 'EOSE' || m[0] === 'CLOSED') && m[1] === sub) return [events, m];
        else if (m[0] !== 'AUTH') throw new Error(`unexpected ${JSON.stringify(m)}`);
    }
}

async function expectRefusal(c, cmd, sub, prefix, challenge) {
    if (prefix === 'auth-required:') {
        const a = await c.next(`AUTH before the ${cmd} refusal`);
        expect(a[0] === 'AUTH' && a[1] === challenge, `${cmd}: no AUTH before the refusal: ${JSON.stringify(a)}`);
    }
    const m = await c.next(`the ${cmd} refusal`);
    const want = cmd === 'REQ' ? 'CLOSED' : 'NEG-ERR';
    expect(m[0] === want && m[1] === sub && m[2].startsWith(prefix), `${cmd}: want ${want} ${prefix}, got ${JSON.stringify(m)}`);
}

async function run(url, dir) {
    const keys = JSON.parse(readFileSync(join(dir, 'keys.json'), 'utf8'));
    const events = readFileSync(join(dir, 'events.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const dm = events.filter((e) => e.kind === 4);
    const owner = unhex(keys.owner), other = unhex(keys.other);
    const emptyNeg = '6100000200'; // protocol v1, one empty-set range: "send me what you have"

    let c = await connect(url);
    const first = await c.next('AUTH on connect');
    expect(first[0] === 'AUTH' && typeof first[1] === 'string', `first message is not AUTH: ${JSON.stringify(first)}`);
    const challenge = first[1];

    c.send(['REQ', 'dms', { kinds: [4] }]);
    await expectRefusal(c, 'REQ', 'dms', 'auth-required:', challenge);
    c.send(['NEG-OPEN', 'neg1', { kinds: [4, 1] }, emptyNeg]);
    await expectRefusal(c, 'NEG-OPEN', 'neg1', 'auth-required:', challenge);
    c.send(['NEG-OPEN', 'neg2', {}, emptyNeg]);
    await expectRefusal(c, 'NEG-OPEN', 'neg2', 'auth-required:', challenge);

    c.send(['REQ', 'notes', { kinds: [1] }]);
    let [got, end] = await collect(c, 'notes');
    expect(end[0] === 'EOSE' && got.length === 3, `public notes: ${got.length} events, ${JSON.stringify(end)}`);
    c.send(['REQ', 'ids', { ids: events.map((e) => e.id) }]);
    [got, end] = await collect(c, 'ids');
    expect(end[0] === 'EOSE' && got.length === 3 && got.every((e) => e.kind === 1), `ids before AUTH: ${got.map((e) => e.kind)}`);

    const dmEvent = finalizeEvent({ kind: 4, created_at: Math.floor(Date.now() / 1000), tags: [], content: 'x' }, owner);
    c.send(['EVENT', dmEvent]);
    let ok = await c.next('OK for a kind 4 EVENT');
    // The AUTH challenge comes again first, then the OK.
    expect(ok[0] === 'AUTH' && ok[1] === challenge, `EVENT kind 4: no AUTH first: ${JSON.stringify(ok)}`);
    ok = await c.next('OK for a kind 4 EVENT');
    expect(ok[0] === 'OK' && ok[1] === dmEvent.id && ok[2] === false && ok[3].startsWith('auth-required:'),
        `EVENT kind 4: ${JSON.stringify(ok)}`);

    // Bad AUTH events: each refused with OK false "invalid: ...".
    const now = Math.floor(Date.now() / 1000);
    const good = makeAuthEvent(url, challenge);
    const bad = {
        'wrong challenge': finalizeEvent(makeAuthEvent(url, 'not-the-challenge'), owner),
        'wrong relay': finalizeEvent(makeAuthEvent('ws://127.0.0.1:1', challenge), owner),
        'wrong kind': finalizeEvent({ ...good, kind: 22241 }, owner),
        'stale': finalizeEvent({ ...good, created_at: now - 3600 }, owner),
        'bad signature': (() => { const e = finalizeEvent({ ...good }, owner); e.sig = e.sig.replace(/^./, (ch) => (ch === '0' ? '1' : '0')); return e; })(),
    };
    for (const [what, ev] of Object.entries(bad)) {
        c.send(['AUTH', ev]);
        const m = await c.next(`OK for AUTH (${what})`);
        expect(m[0] === 'OK' && m[1] === ev.id && m[2] === false && m[3].startsWith('invalid:'), `AUTH ${what}: ${JSON.stringify(m)}`);
    }
    c.send(['REQ', 'dms2', { kinds: [4] }]);
    await expectRefusal(c, 'REQ', 'dms2', 'auth-required:', challenge);

    // The owner's AUTH: accepted, and the DMs are served.
    const auth = finalizeEvent(makeAuthEvent(url, challenge), owner);
    c.send(['AUTH', auth]);
    ok = await c.next('OK for the owner AUTH');
    expect(ok[0] === 'OK' && ok[1] === auth.id && ok[2] === true, `owner AUTH: ${JSON.stringify(ok)}`);
    c.send(['REQ', 'dms3', { kinds: [4] }]);
    [got, end] = await collect(c, 'dms3');
    expect(end[0] === 'EOSE' && got.length === dm.length, `DMs after AUTH: ${got.length}, ${JSON.stringify(end)}`);
    c.send(['NEG-OPEN', 'neg3', { kinds: [4, 1059] }, emptyNeg]);
    const neg = await c.next('NEG-MSG after AUTH');
    expect(neg[0] === 'NEG-MSG' && neg[1] === 'neg3', `NEG-OPEN after AUTH: ${JSON.stringify(neg)}`);
    c.close();

    // A stranger: authenticated, not allowed.
    c = await connect(url);
    const ch2 = (await c.next('AUTH on connect'))[1];
    expect(ch2 !== challenge, 'the same challenge on two connections');
    const auth2 = finalizeEvent(makeAuthEvent(url, ch2), other);
    c.send(['AUTH', auth2]);
    ok = await c.next('OK for the stranger AUTH');
    expect(ok[0] === 'OK' && ok[2] === true, `stranger AUTH: ${JSON.stringify(ok)}`);
    c.send(['REQ', 'dms4', { kinds: [1059] }]);
    await expectRefusal(c, 'REQ', 'dms4', 'restricted:', ch2);
    c.send(['NEG-OPEN', 'neg4', { kinds: [4] }, emptyNeg]);
    await expectRefusal(c, 'NEG-OPEN', 'neg4', 'restricted:', ch2);
    c.close();
    console.log('testrelay --auth: challenges, refusals, AUTH checks and restricted: as NIP-42 says');
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'gen' && args.length === 1) gen(...args);
else if (mode === 'run' && args.length === 2) {
    try {
        await run(...args);
        process.exit(0);
    } catch (e) {
        console.error(`testrelay-auth: ${e.message}`);
        process.exit(1);
    }
} else {
    console.error('usage: testrelay-auth.mjs gen DIR | run URL DIR');
    process.exit(2);
}

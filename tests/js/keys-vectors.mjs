// keys-vectors.mjs — nostr-tools as the independent side of negsync's key tests.
//
//   node keys-vectors.mjs gen DIR
//       Makes a fresh secret key and writes it as DIR/key.nsec (NIP-19, by
//       nostr-tools' encoder) and DIR/key.hex, both mode 600, and its public
//       key as DIR/pub (hex, then npub, one per line).
//
//   node keys-vectors.mjs verify OUT DIR URL CHALLENGE
//       Checks what `test-keys --sign-auth` printed (npub, hex pubkey, AUTH
//       event): the npub is nostr-tools' encoding of the key nostr-tools
//       derives from the secret, and the event is the one makeAuthEvent
//       describes (kind 22242, relay and challenge tags, empty content),
//       created now, signed by that key (verifyEvent).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { importPeer } from './peers.mjs';

const { generateSecretKey, getPublicKey, verifyEvent } = await importPeer('nostr-tools', './pure');
const nip19 = await importPeer('nostr-tools', './nip19');
const { makeAuthEvent } = await importPeer('nostr-tools', './nip42');

const hex = (b) => Buffer.from(b).toString('hex');

function gen(dir) {
    const sk = generateSecretKey();
    const pk = getPublicKey(sk);
    writeFileSync(join(dir, 'key.nsec'), nip19.nsecEncode(sk) + '\n', { mode: 0o600 });
    writeFileSync(join(dir, 'key.hex'), hex(sk) + '\n', { mode: 0o600 });
    writeFileSync(join(dir, 'pub'), `${pk}\n${nip19.npubEncode(pk)}\n`);
}

function verify(out, dir, url, challenge) {
    const [pk, npub] = readFileSync(join(dir, 'pub'), 'utf8').trim().split('\n');
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    const problems = [];

    if (lines.length !== 3) throw new Error(`expected 3 lines, got ${lines.length}`);
    if (lines[0] !== npub) problems.push(`npub ${lines[0]}, nostr-tools says ${npub}`);
    if (lines[1] !== pk) problems.push(`pubkey ${lines[1]}, nostr-tools derives ${pk}`);
    const ev = JSON.parse(lines[2]);
    const want = makeAuthEvent(url, challenge);
    if (!verifyEvent(ev)) problems.push('verifyEvent refuses the AUTH event');
    if (ev.pubkey !== pk) problems.push(`event pubkey ${ev.pubkey}, want ${pk}`);
    if (ev.kind !== want.kind) problems.push(`kind ${ev.kind}, want ${want.kind}`);
    if (JSON.stringify(ev.tags) !== JSON.stringify(want.tags))
        problems.push(`tags ${JSON.stringify(ev.tags)}, want ${JSON.stringify(want.tags)}`);
    if (ev.content !== want.content) problems.push('content is not empty');
    if (Math.abs(ev.created_at - want.created_at) > 600)
        problems.push(`created_at ${ev.created_at} is not now (${want.created_at})`);
    if (problems.length) {
        for (const p of problems) console.error(`keys-vectors: ${p}`);
        process.exit(1);
    }
    console.log(`nostr-tools: the AUTH event verifies, signed by ${npub}`);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'gen' && args.length === 1) gen(...args);
else if (mode === 'verify' && args.length === 4) verify(...args);
else {
    console.error('usage: keys-vectors.mjs gen DIR | verify OUT DIR URL CHALLENGE');
    process.exit(2);
}

// neg-interop.mjs — negsync's Negentropy against independent implementations.
//
//   node neg-interop.mjs HARNESS      negsync (tests/neg-harness) against the npm peers
//   node neg-interop.mjs --js-only    the npm peers against each other (checks this driver)
//
// The peers:
//  - nostr-tools (nip77): a faithful port of the reference *initiator*, so our
//    initiator must produce the very same bytes, round after round.
//  - @nostr-dev-kit/sync: plays both roles but writes some bounds with longer
//    id prefixes than the reference, so only its outcomes are compared. It is
//    also the responder for our adaptive initiator (neg_set_adaptive), whose
//    messages differ from the reference's by design.
//
// Every case builds two random item sets (client and server) from its own
// seed, derived from the run seed and the case number, and checks that each
// client learns exactly the true have/need sets. Environment:
//   NEG_INTEROP_SEED=N      run seed (printed; random by default)
//   NEG_INTEROP_CASE=K      run only case K (with the same seed, to reproduce a failure)
//   NEG_INTEROP_VERBOSE=1   print every case and full messages on a mismatch
//   NEG_INTEROP_JOBS=N      cases run at once (default 3)
//
// Both npm peers do varint arithmetic on 32-bit JavaScript integers, so
// timestamps stay below 2^31 - 1 here; larger ones are test-neg's business.
//
// @nostr-dev-kit/sync's responder, when its frame size limit cuts an IdList
// short, fingerprints the rest of the range from the original upper index
// instead of the cut (the reference does `upper = index`), so the items between
// the cut and the range's end can go unreported. With a frame limit, the
// conversation against its responder is therefore only required to learn a
// subset of the truth, byte-identical to what nostr-tools learns from it; the
// shortfalls are counted in the final line.

import { spawn } from 'node:child_process';
import { importPeer } from './peers.mjs';

const { nip77 } = await importPeer('nostr-tools');
const { Negentropy: NtNegentropy, NegentropyStorageVector: NtStorage } = nip77;
const { Negentropy: NdkNegentropy, NegentropyStorage: NdkStorage } = await importPeer('@nostr-dev-kit/sync');

const MAX_TS = 2 ** 31 - 2; // see above: the JS peers' varints are 32-bit
const READ_TIMEOUT_MS = 30000; // a watchdog on a hung harness, not a delay
const MAX_ROUNDS = 5000;

const args = process.argv.slice(2);
const jsOnly = args[0] === '--js-only';
const harnessPath = jsOnly ? null : args[0];
if (!jsOnly && !harnessPath) {
    console.error('usage: node neg-interop.mjs HARNESS | --js-only');
    process.exit(2);
}
const verbose = !!process.env.NEG_INTEROP_VERBOSE;
const runSeed = process.env.NEG_INTEROP_SEED !== undefined
    ? Number(process.env.NEG_INTEROP_SEED) >>> 0
    : (Date.now() ^ (process.pid << 16)) >>> 0;
const jobs = Math.max(1, Number(process.env.NEG_INTEROP_JOBS) || 3);
const onlyCase = process.env.NEG_INTEROP_CASE !== undefined ? Number(process.env.NEG_INTEROP_CASE) : null;

// ---------------------------------------------------------------- randomness

function mulberry32(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return (t ^ (t >>> 14)) >>> 0;
    };
}

class Rng {
    constructor(seed) { this.next = mulberry32(seed); }
    int(n) { return Math.floor((this.next() / 4294967296) * n); } // [0, n)
    range(lo, hi) { return lo + this.int(hi - lo + 1); } // [lo, hi]
    pick(arr) { return arr[this.int(arr.length)]; }
    chance(p) { return this.next() / 4294967296 < p; }
    bytes(n) {
        const b = new Uint8Array(n);
        for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
        return b;
    }
    shuffle(arr) {
        for (let i = arr.length - 1; i > 0; i--) {
            const j = this.int(i + 1);
            [arr[i], arr[j]] = [arr[j], arr[i]];
        }
        return arr;
    }
}

function caseSeed(index) {
    return mulberry32((runSeed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0)();
}

const toHex = (b) => Buffer.from(b).toString('hex');
const fromHex = (h) => new Uint8Array(Buffer.from(h, 'hex'));

// ---------------------------------------------------------------- the cases

const LIMITS = [0, 4096, 60000];
const TS_MODES = ['spread', 'equal', 'few', 'recent'];
const ID_MODES = ['random', 'prefix', 'zerotail'];
const OVERLAPS = [0, 0.1, 0.5, 0.9, 0.99, 1];

function planCases() {
    const plan = [];
    const rng = new Rng(runSeed);
    const add = (c) => plan.push(c);

    // The big ones: many rounds under a frame limit, identical sets, one side empty.
    add({ nC: 20000, nS: 20000, overlap: 1, ts: 'spread', ids: 'random', limit: 0 });
    add({ nC: 20000, nS: 20000, overlap: 0.99, ts: 'recent', ids: 'random', limit: 4096 });
    add({ nC: 0, nS: 20000, overlap: 0, ts: 'spread', ids: 'random', limit: 4096 });
    add({ nC: 20000, nS: 0, overlap: 0, ts: 'few', ids: 'random', limit: 60000 });
    add({ nC: 20000, nS: 20000, overlap: 0.5, ts: 'equal', ids: 'prefix', limit: 60000 });
    add({ nC: 20000, nS: 17000, overlap: 0.9, ts: 'few', ids: 'zerotail', limit: 0 });
    add({ nC: 5000, nS: 20000, overlap: 0, ts: 'equal', ids: 'random', limit: 60000 });
    // Scattered differences, where the adaptive initiator departs from the reference most.
    add({ nC: 20000, nS: 21000, overlap: 0.9, ts: 'spread', ids: 'random', limit: 60000 });
    add({ nC: 20000, nS: 21000, overlap: 0.9, ts: 'spread', ids: 'random', limit: 4096 });

    // The edges of splitRange (16 buckets, IdList under 32 items) in every limit.
    const edges = [[0, 0], [0, 1], [1, 0], [1, 1], [2, 1], [31, 31], [32, 32], [33, 0],
        [0, 33], [32, 31], [512, 512], [513, 500], [1000, 0]];
    for (const [nC, nS] of edges) {
        for (const limit of LIMITS) {
            add({ nC, nS, overlap: rng.pick([0, 1, 0.5]), ts: rng.pick(TS_MODES),
                ids: rng.pick(ID_MODES), limit });
        }
    }

    // Medium and many small random ones.
    for (let i = 0; i < 24; i++) {
        const nC = rng.range(500, 6000);
        add({ nC, nS: rng.chance(0.3) ? nC : rng.range(0, 6000), overlap: rng.pick(OVERLAPS),
            ts: rng.pick(TS_MODES), ids: rng.pick(ID_MODES), limit: rng.pick(LIMITS) });
    }
    for (let i = 0; i < 130; i++) {
        const max = rng.pick([8, 40, 100, 400]);
        const nC = rng.range(0, max);
        add({ nC, nS: rng.chance(0.3) ? nC : rng.range(0, max),
            overlap: rng.chance(0.2) ? rng.next() / 4294967296 : rng.pick(OVERLAPS),
            ts: rng.pick(TS_MODES), ids: rng.pick(ID_MODES), limit: rng.pick(LIMITS) });
    }
    return plan.map((c, index) => ({ ...c, index, seed: caseSeed(index) }));
}

function describe(c) {
    return `case ${c.index} [client=${c.nC} server=${c.nS} overlap=${Math.round(c.overlap * 1000) / 10}%`
        + ` ts=${c.ts} ids=${c.ids} limit=${c.limit}; NEG_INTEROP_SEED=${runSeed}`
        + ` NEG_INTEROP_CASE=${c.index}]`;
}

// Items for both sides and the truth. Shared items are the very same (timestamp,
// id) pairs; ids are unique across the whole case so have/need are plain id sets.
function makeItems(c) {
    const rng = new Rng(c.seed);
    const shared = Math.round(c.overlap * Math.min(c.nC, c.nS));
    const total = c.nC + c.nS - shared;

    const baseTs = rng.chance(0.2) ? rng.pick([0, MAX_TS]) : rng.range(0, MAX_TS);
    const recentBase = 1700000000;
    const timestamp = () => {
        switch (c.ts) {
        case 'equal': return baseTs;
        case 'few': return Math.min(MAX_TS, baseTs + rng.int(4));
        case 'recent': return recentBase - rng.int(10000000);
        default: return rng.chance(0.01) ? rng.pick([0, 1, MAX_TS]) : rng.range(0, MAX_TS);
        }
    };
    // Long shared prefixes force long minimal bounds; zero tails make bounds
    // whose implicit zero padding equals or just misses an item.
    // Fingerprints are sums of ids, so ids that differ only in a byte or two
    // make different sets with equal sums easy to come by: a client-only pair
    // and a server-only pair from one 31-byte-prefix group, with equal sums of
    // last bytes, make a range look equal to every implementation, the
    // reference too, and the truth cannot be learned. Each group therefore
    // feeds one part only (shared, client-only, server-only): sums across
    // different random prefixes do not collide.
    const groups = [];
    for (let g = 0; g < 12; g++) groups.push({ prefix: rng.bytes(32), len: rng.pick([31, 31, 30, 28, 24, 16, 8]) });
    const part = (i) => (i < shared ? 0 : i < c.nC ? 1 : 2);
    const id = () => {
        if (c.ids === 'prefix' && rng.chance(0.9)) {
            const p = part(items.length);
            const g = groups[p + 3 * rng.int(4)];
            const b = rng.bytes(32);
            b.set(g.prefix.subarray(0, g.len));
            return b;
        }
        if (c.ids === 'zerotail' && rng.chance(0.9)) {
            const b = new Uint8Array(32);
            b.set(rng.bytes(rng.range(4, 31))); /* 4+ random bytes: see 'prefix' above */
            return b;
        }
        return rng.bytes(32);
    };

    const seen = new Set();
    const items = [];
    while (items.length < total) {
        const idHex = toHex(id());
        if (seen.has(idHex)) continue;
        seen.add(idHex);
        items.push({ timestamp: timestamp(), id: idHex });
    }
    const client = items.slice(0, c.nC);
    const server = items.slice(0, shared).concat(items.slice(c.nC));
    return {
        client: rng.shuffle(client.slice()),
        server: rng.shuffle(server.slice()),
        have: new Set(items.slice(shared, c.nC).map((it) => it.id)),
        need: new Set(items.slice(c.nC).map((it) => it.id)),
    };
}

// ---------------------------------------------------------------- failures

class Mismatch extends Error {}

function hexWindow(a, b) {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    const byte = Math.floor(i / 2);
    if (verbose) return { byte, a, b };
    const from = Math.max(0, i - 64) & ~1;
    const cut = (s) => (from > 0 ? '…' : '') + s.slice(from, i + 96) + (s.length > i + 96 ? '…' : '');
    return { byte, a: cut(a), b: cut(b) };
}

function sample(set) {
    return [...set].slice(0, 3).map((h) => h.slice(0, 16) + '…').join(' ');
}

// got (array of hex ids) against want (Set): "" when they hold the same ids.
// An id may be reported more than once: when a frame limit cuts a reply short,
// the rest of the space comes back as one fingerprint, and ranges settled in an
// earlier round are split and settled again (the reference does the same).
function setDiff(got, want) {
    const g = new Set(got);
    const problems = [];
    const missing = new Set([...want].filter((x) => !g.has(x)));
    const extra = new Set([...g].filter((x) => !want.has(x)));
    if (missing.size) problems.push(`${missing.size} missing (${sample(missing)})`);
    if (extra.size) problems.push(`${extra.size} wrong (${sample(extra)})`);
    return problems.join(', ');
}

// Two lists of ids as multisets: "" when equal.
function listDiff(got, want) {
    const a = got.slice().sort(), b = want.slice().sort();
    if (a.length === b.length && a.every((x, i) => x === b[i])) return '';
    return setDiff(got, new Set(want)) || 'the same ids, reported a different number of times';
}

// ---------------------------------------------------------------- peers

// A harness process spoken to line by line over pipes.
class HarnessProc {
    constructor(role, limit, adaptive = false) {
        this.role = role;
        const env = { ...process.env, FRAMESIZELIMIT: String(limit), NEG_ADAPTIVE: adaptive ? '1' : '0' };
        this.child = spawn(harnessPath, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
        this.lines = [];
        this.waiter = null;
        this.partial = '';
        this.stderr = '';
        this.closed = null;
        this.child.stdout.setEncoding('utf8');
        this.child.stdout.on('data', (chunk) => {
            const parts = (this.partial + chunk).split('\n');
            this.partial = parts.pop();
            this.lines.push(...parts);
            this.wake();
        });
        this.child.stderr.setEncoding('utf8');
        this.child.stderr.on('data', (chunk) => { this.stderr += chunk; });
        this.child.stdin.on('error', () => {}); // EPIPE after a crash: reported by readLine
        this.child.on('error', (e) => { this.closed = `could not run ${harnessPath}: ${e.message}`; this.wake(); });
        this.child.on('close', (code, signal) => {
            this.closed = `negsync ${this.role} harness exited (${signal || 'status ' + code})`
                + (this.stderr ? `: ${this.stderr.trim()}` : '');
            this.wake();
        });
    }

    wake() {
        if (!this.waiter) return;
        const w = this.waiter;
        if (this.lines.length) {
            this.waiter = null;
            clearTimeout(w.timer);
            w.resolve(this.lines.shift());
        } else if (this.closed) {
            this.waiter = null;
            clearTimeout(w.timer);
            w.reject(new Mismatch(this.closed));
        }
    }

    send(text) { this.child.stdin.write(text); }

    readLine() {
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.waiter = null;
                reject(new Mismatch(`negsync ${this.role} harness: no answer in ${READ_TIMEOUT_MS / 1000} s`));
            }, READ_TIMEOUT_MS);
            this.waiter = { resolve, reject, timer };
            this.wake();
        });
    }

    loadItems(items) {
        this.send(items.map((it) => `item,${it.timestamp},${it.id}\n`).join('') + 'seal\n');
    }

    async expectMsg(what) {
        const line = await this.readLine();
        if (!line.startsWith('msg,')) throw new Mismatch(`negsync ${this.role} harness: expected msg for ${what}, got "${line.slice(0, 80)}"`);
        return line.slice(4);
    }

    close() {
        if (this.closed === null) {
            this.child.stdin.end();
            this.child.kill();
        }
    }
}

// Initiators: initiate() -> hex; reconcile(hex) -> { have, need, msg|null }.
// Responders: respond(hex) -> hex. `ours` marks negsync (frame checks apply).

class OurInitiator {
    constructor(items, limit, adaptive = false) {
        this.name = adaptive ? 'negsync (adaptive)' : 'negsync';
        this.ours = true;
        this.p = new HarnessProc('initiator', limit, adaptive);
        this.p.loadItems(items);
    }
    async initiate() {
        this.p.send('initiate\n');
        return this.p.expectMsg('initiate');
    }
    async reconcile(hex) {
        this.p.send(`msg,${hex}\n`);
        const have = [], need = [];
        for (;;) {
            const line = await this.p.readLine();
            if (line.startsWith('have,')) have.push(line.slice(5));
            else if (line.startsWith('need,')) need.push(line.slice(5));
            else if (line === 'done') return { have, need, msg: null };
            else if (line.startsWith('msg,')) return { have, need, msg: line.slice(4) };
            else throw new Mismatch(`negsync initiator harness: unexpected line "${line.slice(0, 80)}"`);
        }
    }
    close() { this.p.close(); }
}

class OurResponder {
    constructor(items, limit) {
        this.name = 'negsync';
        this.ours = true;
        this.p = new HarnessProc('responder', limit);
        this.p.loadItems(items);
    }
    async respond(hex) {
        this.p.send(`msg,${hex}\n`);
        return this.p.expectMsg('a reply');
    }
    close() { this.p.close(); }
}

class NtInitiator {
    constructor(items, limit) {
        this.name = 'nostr-tools';
        const st = new NtStorage();
        for (const it of items) st.insert(it.timestamp, it.id);
        st.seal();
        // nostr-tools has no "no limit": an infinite one never trips its check.
        this.neg = new NtNegentropy(st, limit || Infinity);
    }
    async initiate() { return this.neg.initiate(); }
    async reconcile(hex) {
        const have = [], need = [];
        const msg = this.neg.reconcile(hex, (id) => have.push(id), (id) => need.push(id));
        return { have, need, msg };
    }
    close() {}
}

function ndkStorage(items) {
    const st = new NdkStorage();
    for (const it of items) st.insert(it.timestamp, it.id);
    st.seal();
    return st;
}

class NdkInitiator {
    constructor(items, limit) {
        this.name = '@nostr-dev-kit/sync';
        this.neg = new NdkNegentropy(ndkStorage(items), limit);
    }
    async initiate() { return toHex(await this.neg.initiate()); }
    async reconcile(hex) {
        const r = await this.neg.reconcile(fromHex(hex));
        return { have: r.have.map(toHex), need: r.need.map(toHex), msg: r.nextMessage ? toHex(r.nextMessage) : null };
    }
    close() {}
}

class NdkResponder {
    constructor(items, limit) {
        this.name = '@nostr-dev-kit/sync';
        this.neg = new NdkNegentropy(ndkStorage(items), limit);
    }
    async respond(hex) { return toHex((await this.neg.reconcile(fromHex(hex))).nextMessage); }
    close() {}
}

// ---------------------------------------------------------------- conversations

const stats = { cases: 0, conversations: 0, rounds: 0, failures: 0, ndkLimitShort: 0 };

function checkFrame(who, hex, limit, what) {
    if (!hex.startsWith('61')) throw new Mismatch(`${who} ${what} does not start with 0x61: ${hex.slice(0, 40)}`);
    if (limit && hex.length / 2 > limit) throw new Mismatch(`${who} ${what} is ${hex.length / 2} bytes, over the frame limit ${limit}`);
}

// initiators[0] drives the conversation: its messages go to the responder and
// the reply goes to every initiator. The others must produce the very same
// bytes and discover the same ids at every round. `exact`: every initiator
// must learn exactly the truth; otherwise a subset (see the top of the file).
async function converse(name, initiators, responder, truth, limit, exact) {
    const lead = initiators[0];
    const have = initiators.map(() => []), need = initiators.map(() => []);
    let round = 0, short = false;
    const at = (what) => `${name}, round ${round}: ${what}`;
    try {
        let msgs = await Promise.all(initiators.map((i) => i.initiate()));
        for (;;) {
            for (let k = 0; k < initiators.length; k++) {
                if (initiators[k].ours) checkFrame(initiators[k].name, msgs[k], limit, at('initiator message'));
                if (k > 0 && msgs[k] !== msgs[0]) {
                    const w = hexWindow(msgs[0], msgs[k]);
                    throw new Mismatch(at(`initiator messages differ at byte ${w.byte}`
                        + ` (${lead.name} ${msgs[0].length / 2} bytes, ${initiators[k].name} ${msgs[k].length / 2} bytes)\n`
                        + `    expected (${lead.name}): ${w.a}\n    got (${initiators[k].name}): ${w.b}`));
                }
            }
            const reply = await responder.respond(msgs[0]);
            if (responder.ours) checkFrame(responder.name, reply, limit, at('reply'));
            stats.rounds++;
            const res = [];
            for (const i of initiators) res.push(await i.reconcile(reply));
            for (let k = 0; k < initiators.length; k++) {
                have[k].push(...res[k].have);
                need[k].push(...res[k].need);
                if (k === 0) continue;
                for (const [kind, got, want] of [['have', res[k].have, res[0].have], ['need', res[k].need, res[0].need]]) {
                    const d = listDiff(got, want);
                    if (d) {
                        throw new Mismatch(at(`${initiators[k].name} found ${got.length} ${kind} ids,`
                            + ` ${lead.name} ${want.length}: ${d}`));
                    }
                }
                if ((res[k].msg === null) !== (res[0].msg === null)) {
                    throw new Mismatch(at(`${res[0].msg === null ? lead.name : initiators[k].name} is done,`
                        + ` ${res[0].msg === null ? initiators[k].name : lead.name} is not`));
                }
            }
            if (res[0].msg === null) break;
            msgs = res.map((r) => r.msg);
            if (++round >= MAX_ROUNDS) throw new Mismatch(at('no end after that many rounds'));
        }
        for (let k = 0; k < initiators.length; k++) {
            for (const [kind, got, want] of [['have', have[k], truth.have], ['need', need[k], truth.need]]) {
                let d = setDiff(got, want);
                if (d && !exact && !/wrong/.test(d)) {
                    if (k === 0) short = true;
                    d = '';
                }
                if (d) throw new Mismatch(at(`after the last round ${initiators[k].name} learned the wrong ${kind} set: ${d}`));
            }
        }
        if (short) stats.ndkLimitShort++;
    } finally {
        stats.conversations++;
        for (const i of initiators) i.close();
    }
}

async function runCase(c) {
    const t0 = Date.now();
    const { client, server, have, need } = makeItems(c);
    const truth = { have, need };
    const L = c.limit;
    if (jsOnly) {
        await converse('nostr-tools -> @nostr-dev-kit/sync', [new NtInitiator(client, L)],
            new NdkResponder(server, L), truth, L, L === 0);
        await converse('@nostr-dev-kit/sync -> @nostr-dev-kit/sync', [new NdkInitiator(client, L)],
            new NdkResponder(server, L), truth, L, L === 0);
    } else {
        const resp = new OurResponder(server, L);
        try {
            await converse('nostr-tools+negsync initiators -> negsync responder',
                [new NtInitiator(client, L), new OurInitiator(client, L)], resp, truth, L, true);
            await converse('@nostr-dev-kit/sync initiator -> negsync responder',
                [new NdkInitiator(client, L)], resp, truth, L, true);
        } finally {
            resp.close();
        }
        await converse('nostr-tools+negsync initiators -> @nostr-dev-kit/sync responder',
            [new NtInitiator(client, L), new OurInitiator(client, L)],
            new NdkResponder(server, L), truth, L, L === 0);
        // Adaptive splitting departs from the reference's bytes on purpose;
        // an independent responder must still lead it to the true sets.
        await converse('negsync adaptive initiator -> @nostr-dev-kit/sync responder',
            [new OurInitiator(client, L, true)], new NdkResponder(server, L), truth, L, L === 0);
    }
    if (verbose) console.log(`ok ${describe(c)} ${Date.now() - t0} ms`);
}

// A placeholder harness (exit 77) or a missing one means: nothing to test yet.
async function probeHarness() {
    const p = new HarnessProc('probe', 0);
    p.send('seal\ninitiate\n');
    try {
        const line = await p.readLine();
        if (!line.startsWith('msg,61')) throw new Error(`unexpected first answer "${line}"`);
    } catch (e) {
        await new Promise((r) => (p.closed ? r() : p.child.on('close', r)));
        if (p.child.exitCode === 77) {
            console.log(`SKIP: ${harnessPath} is a placeholder (exit 77)`);
            process.exit(77);
        }
        throw e;
    } finally {
        p.close();
    }
}

async function main() {
    const t0 = Date.now();
    console.log(`neg-interop: seed ${runSeed} (rerun with NEG_INTEROP_SEED=${runSeed};`
        + ` one case: NEG_INTEROP_CASE=K)${jsOnly ? ', npm peers only' : ''}`);
    if (!jsOnly) await probeHarness();
    const plan = planCases().filter((c) => onlyCase === null || c.index === onlyCase);
    // A few cases at once: most of a small case's time is spent waiting on
    // process start-up and pipes, not on either CPU.
    let next = 0;
    const worker = async () => {
        while (next < plan.length && stats.failures < 10) {
            const c = plan[next++];
            stats.cases++;
            try {
                await runCase(c);
            } catch (e) {
                stats.failures++;
                const msg = e instanceof Mismatch ? e.message : (e.stack || String(e));
                console.log(`FAIL ${describe(c)}\n  ${msg}`);
                if (stats.failures === 10) console.log('neg-interop: stopping after 10 failures');
            }
        }
    };
    await Promise.all(Array.from({ length: jobs }, worker));
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    console.log(`neg-interop: ${stats.cases} cases, ${stats.conversations} conversations,`
        + ` ${stats.rounds} rounds, ${stats.failures} failed;`
        + ` ${stats.ndkLimitShort} @nostr-dev-kit/sync frame-limit shortfalls (its bug, see the top of the script);`
        + ` seed ${runSeed}, ${secs} s`);
    process.exit(stats.failures ? 1 : 0);
}

main().catch((e) => {
    console.log(`neg-interop: ${e.stack || e}`);
    process.exit(1);
});

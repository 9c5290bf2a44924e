// testrelay-interop.mjs — tests/negsync-testrelay driven over real websockets
// by independent code: nostr-tools' Negentropy initiator against the relay's
// responder, REQ answers against filter_match (tests/testrelay/tr-helper) and
// nostr-tools' matchFilter, and every fault mode against what it promises.
//
//   node [--experimental-websocket] testrelay-interop.mjs HELPER EVENTS NAME=URL...
//
// tests/testrelay-interop.sh starts one relay per NAME (see there for the
// flags of each) and passes its URL; a NAME this file does not know is an
// error, and so is a scenario whose relay is missing. EVENTS is the JSON-lines
// file the relays were preloaded with. Environment:
//   TESTRELAY_SEED=N      seed of the random sets (printed; random by default)
//   TESTRELAY_TIMEOUT=MS  deadline for every single reply (default 20000)
//   RELAY_STATS_<NAME>    the --stats-file of relay NAME (for the byte counts)
//   RELAY_PID_<NAME>      its process id (for SIGUSR1)
//
// Every wait is for a specific message with a deadline; only the "silent"
// mode is proved by ordering (a REQ sent after the NEG-OPEN is answered and
// the NEG-OPEN is not), never by waiting to see nothing happen.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { importPeer } from './peers.mjs';

const nt = await importPeer('nostr-tools');
const { nip77, finalizeEvent, generateSecretKey, getPublicKey, getEventHash, verifyEvent, matchFilter } = nt;

if (typeof WebSocket !== 'function') {
    console.error('no global WebSocket: run node with --experimental-websocket (node 20) or node >= 22');
    process.exit(2);
}

const [helperPath, eventsPath, ...relayArgs] = process.argv.slice(2);
if (!helperPath || !eventsPath) {
    console.error('usage: node testrelay-interop.mjs HELPER EVENTS NAME=URL...');
    process.exit(2);
}
const relays = {};
for (const a of relayArgs) {
    const eq = a.indexOf('=');
    if (eq < 0) throw new Error(`not NAME=URL: ${a}`);
    relays[a.slice(0, eq)] = a.slice(eq + 1);
}
const TIMEOUT = Number(process.env.TESTRELAY_TIMEOUT) || 20000;
const seed = process.env.TESTRELAY_SEED !== undefined
    ? Number(process.env.TESTRELAY_SEED) >>> 0
    : (Date.now() ^ (process.pid << 16)) >>> 0;
console.log(`seed ${seed} (TESTRELAY_SEED=${seed} reproduces this run)`);

// ------------------------------------------------------------------ helpers

function mulberry32(s) {
    let a = s >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}
const rand = mulberry32(seed);
const randInt = (n) => Math.floor(rand() * n);
const pick = (arr) => arr[randInt(arr.length)];
const randHex = (nbytes) => {
    let s = '';
    for (let i = 0; i < nbytes; i++) s += randInt(256).toString(16).padStart(2, '0');
    return s;
};
function sample(arr, k) {
    const copy = arr.slice();
    for (let i = 0; i < k && i < copy.length; i++) {
        const j = i + randInt(copy.length - i);
        [copy[i], copy[j]] = [copy[j], copy[i]];
    }
    return copy.slice(0, Math.min(k, copy.length));
}

let checks = 0;
let failures = 0;
function check(cond, what) {
    checks++;
    if (!cond) {
        failures++;
        console.error(`FAIL: ${what}`);
    }
    return cond;
}
function checkEq(got, want, what) {
    const g = JSON.stringify(got);
    const w = JSON.stringify(want);
    return check(g === w, `${what}: got ${g.slice(0, 400)}, want ${w.slice(0, 400)}`);
}
// Distinct ids: when a relay's reply is cut at its frame limit, the reference
// protocol ends it with one fingerprint over everything after the cut, ranges
// already settled included, so the initiator can learn an id twice.
const sameSet = (a, b) => {
    const x = [...new Set(a)].sort();
    const y = [...new Set(b)].sort();
    return x.length === y.length && x.join() === y.join();
};

// nostr-tools has no "no limit" (0); this is as good as none.
const NO_FRAME_LIMIT = 2 ** 31 - 1;
const byteLen = (s) => Buffer.byteLength(s, 'utf8');

// One websocket to a relay. Every message is kept in order; take(pred) waits
// for the first not yet taken that satisfies pred, with a deadline.
class Conn {
    constructor(url) {
        this.url = url;
        this.queue = [];
        this.waiters = [];
        this.closed = false;
        this.closeInfo = null;
        this.sentBytes = 0;
        this.recvBytes = 0;
        this.ws = new WebSocket(url);
        this.ws.binaryType = 'arraybuffer';
        this.ws.onmessage = (e) => {
            const raw = typeof e.data === 'string' ? e.data : Buffer.from(e.data).toString('utf8');
            this.recvBytes += byteLen(raw);
            let msg = null;
            try {
                msg = JSON.parse(raw);
            } catch {
                msg = null;
            }
            this.queue.push({ raw, msg, at: Date.now() });
            this._wake();
        };
        this.ws.onclose = (e) => {
            this.closed = true;
            this.closeInfo = { code: e.code, reason: e.reason };
            this._wake();
        };
        this.ws.onerror = () => {};
    }

    static async open(url) {
        const c = new Conn(url);
        await new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`${url}: no connection after ${TIMEOUT} ms`)), TIMEOUT);
            c.ws.onopen = () => {
                clearTimeout(t);
                resolve();
            };
            c.ws.addEventListener('close', () => {
                clearTimeout(t);
                reject(new Error(`${url}: connection refused or closed`));
            });
        });
        return c;
    }

    _wake() {
        const ws = this.waiters;
        this.waiters = [];
        for (const w of ws) w();
    }

    send(msg) {
        const text = typeof msg === 'string' ? msg : JSON.stringify(msg);
        this.sentBytes += byteLen(text);
        this.ws.send(text);
    }

    // The first untaken message for which pred(msg, raw) holds; throws at the
    // deadline or if the connection closes first.
    async take(pred, what = 'a message') {
        const deadline = Date.now() + TIMEOUT;
        for (;;) {
            const i = this.queue.findIndex((m) => pred(m.msg, m.raw));
            if (i >= 0) return this.queue.splice(i, 1)[0];
            if (this.closed) throw new Error(`${this.url}: connection closed while waiting for ${what}`);
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`${this.url}: no ${what} within ${TIMEOUT} ms`);
            await new Promise((resolve) => {
                const t = setTimeout(resolve, left);
                this.waiters.push(() => {
                    clearTimeout(t);
                    resolve();
                });
            });
        }
    }

    // The next message, whatever it is.
    async next(what = 'a message') {
        return this.take(() => true, what);
    }

    async waitClosed(what = 'the relay to close the connection') {
        const deadline = Date.now() + TIMEOUT;
        while (!this.closed) {
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`${this.url}: no close: ${what}`);
            await new Promise((resolve) => {
                const t = setTimeout(resolve, left);
                this.waiters.push(() => {
                    clearTimeout(t);
                    resolve();
                });
            });
        }
    }

    close() {
        if (!this.closed) this.ws.close();
    }
}

const isType = (type, sub) => (m) => Array.isArray(m) && m[0] === type && (sub === undefined || m[1] === sub);
const forSub = (sub) => (m) => Array.isArray(m) && m[1] === sub;

// REQ: the events of one subscription up to EOSE (or a CLOSED).
async function req(conn, sub, filters) {
    conn.send(['REQ', sub, ...filters]);
    const events = [];
    for (;;) {
        const { msg } = await conn.take(forSub(sub), `EOSE for ${sub}`);
        if (msg[0] === 'EVENT') events.push(msg[2]);
        else if (msg[0] === 'EOSE') return { events };
        else if (msg[0] === 'CLOSED') return { events, closed: msg[2] };
        else throw new Error(`unexpected ${JSON.stringify(msg)} in REQ ${sub}`);
    }
}

// Publishes one event; the OK message.
async function publish(conn, ev) {
    conn.send(['EVENT', ev]);
    const { msg } = await conn.take((m) => isType('OK')(m) && m[1] === ev.id, `OK for ${ev.id}`);
    return msg;
}

// A whole negentropy session with nostr-tools as the initiator. items are
// {id, created_at} the client holds. Returns have/need/rounds and the largest
// relay frame in bytes, or {error} with the relay's NEG-ERR.
async function negSync(conn, sub, filter, items, frameSizeLimit = 0) {
    const storage = new nip77.NegentropyStorageVector();
    for (const it of items) storage.insert(it.created_at, it.id);
    storage.seal();
    const neg = new nip77.Negentropy(storage, frameSizeLimit || NO_FRAME_LIMIT);
    const have = [];
    const need = [];
    let rounds = 0;
    let maxFrame = 0;
    let out = neg.initiate();
    conn.send(['NEG-OPEN', sub, filter, out]);
    for (;;) {
        const { msg } = await conn.take(
            (m) => Array.isArray(m) && (m[0] === 'NEG-MSG' || m[0] === 'NEG-ERR') && m[1] === sub,
            `NEG-MSG for ${sub}`,
        );
        if (msg[0] === 'NEG-ERR') return { error: msg };
        rounds++;
        maxFrame = Math.max(maxFrame, msg[2].length / 2);
        out = neg.reconcile(msg[2], (id) => have.push(id), (id) => need.push(id));
        if (out === null) break;
        conn.send(['NEG-MSG', sub, out]);
    }
    conn.send(['NEG-CLOSE', sub]);
    return { have, need, rounds, maxFrame };
}

function httpGet(url, headers = {}, verify = false) {
    const u = new URL(url);
    const get = u.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
        const r = get(u, { headers, rejectUnauthorized: verify, timeout: TIMEOUT }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        });
        r.on('timeout', () => r.destroy(new Error(`${url}: no answer within ${TIMEOUT} ms`)));
        r.on('error', reject);
        r.end();
    });
}
const httpUrl = (wsUrl) => wsUrl.replace(/^ws/, 'http');
const NOSTR_JSON = { Accept: 'application/nostr+json' };

// Answers of tests/testrelay/tr-helper match, one REQ (an array of filters) at a time.
class Matcher {
    constructor(path, limit) {
        this.proc = spawn(helperPath, ['match', path, String(limit)], { stdio: ['pipe', 'pipe', 'inherit'] });
        this.buf = '';
        this.pending = [];
        this.proc.stdout.setEncoding('utf8');
        this.proc.stdout.on('data', (d) => {
            this.buf += d;
            let nl;
            while ((nl = this.buf.indexOf('\n')) >= 0) {
                const line = this.buf.slice(0, nl);
                this.buf = this.buf.slice(nl + 1);
                this.pending.shift()(line);
            }
        });
    }
    ask(filters) {
        return new Promise((resolve) => {
            this.pending.push(resolve);
            this.proc.stdin.write(JSON.stringify(filters) + '\n');
        });
    }
    end() {
        this.proc.stdin.end();
    }
}

function readEvents(path) {
    return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function waitStats(name, connPred, what) {
    const path = process.env[`RELAY_STATS_${name.replace(/-/g, '_')}`];
    if (!path) throw new Error(`no RELAY_STATS_${name} in the environment`);
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
        if (existsSync(path)) {
            try {
                const doc = JSON.parse(readFileSync(path, 'utf8'));
                const hit = doc.connections.find(connPred);
                if (hit) return hit;
            } catch {
                // written by rename, so never half-written; a parse error is a bug
                throw new Error(`${path}: not JSON`);
            }
        }
        if (Date.now() > deadline) throw new Error(`${path}: no ${what} within ${TIMEOUT} ms`);
        await new Promise((r) => setTimeout(r, 20));
    }
}

// ---------------------------------------------------------------- scenarios

const allEvents = readEvents(eventsPath);
const authors = [...new Set(allEvents.map((e) => e.pubkey))];

const scenarios = {};

// The relay's responder against nostr-tools' initiator on random sets: every
// case picks a filter over the preloaded events (plus some published through
// EVENT), keeps a random part of the matching set on the client, adds items
// the relay does not have (some sharing its timestamps), and must learn
// exactly what each side lacks. Several sessions share the connection.
scenarios.neg = async (url) => {
    const conn = await Conn.open(url);
    const sk = generateSecretKey();
    const extra = [];
    for (let i = 0; i < 40; i++) {
        const ev = finalizeEvent({ kind: 1, created_at: 1700000000 + randInt(1000), tags: [], content: `published ${i} ${seed}` }, sk);
        const ok = await publish(conn, ev);
        check(ok[2] === true, `EVENT of a valid event: ${JSON.stringify(ok)}`);
        extra.push(ev);
    }
    const pool = allEvents.concat(extra);
    const timestamps = pool.map((e) => e.created_at);
    const filters = [
        () => ({}),
        () => ({ authors: [pick(authors)] }),
        () => ({ authors: sample(authors, 2), kinds: [1, 7] }),
        () => ({ kinds: [pick([1, 6, 7, 1111, 9802])] }),
        () => ({ authors: [getPublicKey(sk)] }),
        () => {
            const a = pick(timestamps);
            const b = pick(timestamps);
            return { since: Math.min(a, b), until: Math.max(a, b) };
        },
        () => ({ '#t': ['nostr', 'café'] }),
        () => ({ kinds: [12345] }),
    ];
    const cases = 24;
    let totalRounds = 0;
    const runCase = async (k) => {
        const filter = filters[k % filters.length]();
        const server = pool.filter((e) => matchFilter(filter, e));
        const keep = pick([0, 0.3, 0.9, 1]);
        const client = server.filter(() => rand() < keep).map((e) => ({ id: e.id, created_at: e.created_at }));
        const fake = [];
        for (let i = randInt(pick([1, 10, 300])); i > 0; i--) {
            fake.push({ id: randHex(32), created_at: rand() < 0.5 && timestamps.length ? pick(timestamps) : 1700000000 + randInt(5000) });
        }
        const clientIds = new Set(client.map((i) => i.id));
        const wantNeed = server.filter((e) => !clientIds.has(e.id)).map((e) => e.id);
        const frame = pick([0, 0, 4096, 20000]);
        const sub = `neg-${k}-${randHex(4)}`;
        const r = await negSync(conn, sub, filter, client.concat(fake), frame);
        const what = `case ${k} ${JSON.stringify(filter)} (server ${server.length}, client ${client.length}+${fake.length}, frame ${frame})`;
        if (!check(!r.error, `${what}: ${JSON.stringify(r.error)}`)) return;
        check(sameSet(r.need, wantNeed), `${what}: need ${r.need.length} ids, want ${wantNeed.length}`);
        check(sameSet(r.have, fake.map((i) => i.id)), `${what}: have ${r.have.length} ids, want ${fake.length}`);
        check(r.maxFrame <= 500000, `${what}: a relay frame of ${r.maxFrame} bytes`);
        totalRounds += r.rounds;
    };
    for (let k = 0; k < cases; k += 3) await Promise.all([runCase(k), runCase(k + 1), runCase(k + 2)]);
    console.log(`neg: ${cases} random sets reconciled, ${totalRounds} rounds`);
    conn.close();
};

// A set big enough that the relay's replies hit the 500 000-byte frame limit:
// the relay holds only the events of TESTRELAY_BIG (one author).
scenarios['neg-big'] = async (url) => {
    const conn = await Conn.open(url);
    const items = readEvents(process.env.TESTRELAY_BIG);
    const client = items.filter(() => rand() < 0.5).map((e) => ({ id: e.id, created_at: e.created_at }));
    const fake = Array.from({ length: 2000 }, () => ({ id: randHex(32), created_at: 1700000000 + randInt(20000) }));
    const ids = new Set(client.map((i) => i.id));
    const r = await negSync(conn, 'big', {}, client.concat(fake), 0);
    if (check(!r.error, `big set: ${JSON.stringify(r.error)}`)) {
        check(sameSet(r.need, items.filter((e) => !ids.has(e.id)).map((e) => e.id)), 'big set: need');
        const hv = new Set(r.have);
        const missing = fake.filter((i) => !hv.has(i.id)).length;
        check(sameSet(r.have, fake.map((i) => i.id)), `big set: have ${hv.size} distinct ids, want ${fake.length}, ${missing} missing`);
        check(r.maxFrame <= 500000, `big set: a relay frame of ${r.maxFrame} bytes`);
        check(r.maxFrame > 400000, `big set: the largest relay frame (${r.maxFrame} bytes) never neared the limit`);
        console.log(`neg-big: ${items.length} events, ${r.rounds} rounds, largest relay frame ${r.maxFrame} bytes`);
    }
    conn.close();
};

// --max-sync-events 50.
scenarios['max-sync'] = async (url) => {
    const conn = await Conn.open(url);
    const storage = new nip77.NegentropyStorageVector();
    storage.seal();
    const init = new nip77.Negentropy(storage).initiate();
    conn.send(['NEG-OPEN', 'too-many', {}, init]);
    const { msg } = await conn.take(forSub('too-many'), 'NEG-ERR');
    checkEq(msg, ['NEG-ERR', 'too-many', 'blocked: too many query results', 50], 'max-sync-events');
    const few = allEvents.slice(0, 50);
    const r = await negSync(conn, 'just-enough', { ids: few.map((e) => e.id) }, [], 0);
    check(!r.error && sameSet(r.need, few.map((e) => e.id)), `exactly max-sync-events matching is allowed: ${JSON.stringify(r.error)}`);
    conn.close();
};

// NIP-01 and the NIP-77 error paths, on a relay with --req-limit 100.
scenarios.nip01 = async (url) => {
    const REQ_LIMIT = 100;
    const conn = await Conn.open(url);
    const matcher = new Matcher(eventsPath, REQ_LIMIT);
    const reqOrder = (a, b) => (a.created_at !== b.created_at ? b.created_at - a.created_at : a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    const jsExpect = (filters) => {
        const out = new Map();
        for (const f of filters) {
            const hits = allEvents.filter((e) => matchFilter(f, e)).sort(reqOrder);
            const take = Math.min(f.limit ?? Infinity, REQ_LIMIT);
            for (const e of hits.slice(0, take)) out.set(e.id, e);
        }
        return [...out.values()].sort(reqOrder).slice(0, REQ_LIMIT).map((e) => e.id);
    };
    const someIds = () => sample(allEvents, 1 + randInt(30)).map((e) => e.id);
    const eTags = [...new Set(allEvents.flatMap((e) => e.tags.filter((t) => t[0] === 'e').map((t) => t[1])))];
    const ts = allEvents.map((e) => e.created_at).sort((a, b) => a - b);
    const gens = [
        () => ({}),
        () => ({ ids: someIds() }),
        () => ({ authors: sample(authors, 1 + randInt(3)) }),
        () => ({ kinds: sample([1, 6, 7, 1111, 9802, 3], 1 + randInt(2)) }),
        () => ({ '#e': sample(eTags, 1 + randInt(3)) }),
        () => ({ '#p': sample(authors, 1) }),
        () => ({ '#t': [pick(['nostr', 'sync', 'negentropy', 'café', 'absent'])] }),
        () => ({ since: pick(ts) }),
        () => ({ until: pick(ts) }),
        () => ({ since: ts[Math.floor(ts.length / 3)], until: ts[Math.floor(ts.length / 2)], kinds: [1] }),
        () => ({ authors: sample(authors, 2), kinds: [1, 7], '#p': sample(authors, 3) }),
        () => ({ ids: [] }),
    ];
    const filtersFor = () => {
        const n = 1 + (rand() < 0.3 ? randInt(3) : 0);
        return Array.from({ length: n }, () => {
            const f = pick(gens)();
            if (rand() < 0.4) f.limit = pick([0, 1, 5, 50, 150]);
            return f;
        });
    };
    const N = 80;
    for (let k = 0; k < N; k++) {
        const filters = filtersFor();
        const got = (await req(conn, `q${k}`, filters)).events;
        const want = (await matcher.ask(filters)).split(' ').filter(Boolean);
        const what = `REQ ${JSON.stringify(filters).slice(0, 300)}`;
        checkEq(got.map((e) => e.id), want, `${what} vs filter_match`);
        checkEq(want, jsExpect(filters), `${what}: filter_match vs nostr-tools matchFilter`);
        check(got.every((e) => verifyEvent(e)), `${what}: an event that does not verify`);
    }
    matcher.end();
    console.log(`nip01: ${N} REQs agree with filter_match and matchFilter`);

    // Bad filters and other malformed REQs.
    let r = await req(conn, 'bad', [{ kinds: ['one'] }]);
    check(r.closed && r.closed.startsWith('error: ') && r.events.length === 0, `CLOSED on a bad filter: ${r.closed}`);
    r = await req(conn, 'bad2', [{ search: 'x' }]);
    check(r.closed !== undefined, 'CLOSED on an unsupported filter key');
    r = await req(conn, 'nofilter', []);
    check(r.closed !== undefined, 'CLOSED on a REQ without filters');
    conn.send(['CLOSE', 'q1']);
    r = await req(conn, 'after-close', [{ limit: 1 }]);
    check(r.events.length === 1 && !r.closed, 'REQ after CLOSE');

    // EVENT: valid, duplicate, bad signature, bad id, malformed.
    const sk = generateSecretKey();
    const ev = finalizeEvent({ kind: 1, created_at: 1710000000, tags: [['t', 'x']], content: 'hello' }, sk);
    let ok = await publish(conn, ev);
    checkEq(ok, ['OK', ev.id, true, ''], 'OK for a new event');
    ok = await publish(conn, ev);
    check(ok[2] === true && ok[3].startsWith('duplicate:'), `OK for a duplicate: ${JSON.stringify(ok)}`);
    const badSig = { ...finalizeEvent({ kind: 1, created_at: 1710000001, tags: [], content: 'forged' }, sk) };
    badSig.sig = (badSig.sig[0] === '0' ? '1' : '0') + badSig.sig.slice(1);
    ok = await publish(conn, badSig);
    check(ok[2] === false && /^invalid: .*signature/.test(ok[3]), `OK false for a bad signature: ${JSON.stringify(ok)}`);
    const badId = { ...finalizeEvent({ kind: 1, created_at: 1710000002, tags: [], content: 'tampered' }, sk) };
    badId.content = 'tampered after signing';
    ok = await publish(conn, badId);
    check(ok[2] === false && /^invalid: .*id/.test(ok[3]), `OK false for a wrong id: ${JSON.stringify(ok)}`);
    const badKind = { ...ev, kind: 'one' };
    ok = await publish(conn, badKind);
    check(ok[2] === false && ok[3].startsWith('invalid: '), `OK false for a malformed event: ${JSON.stringify(ok)}`);
    r = await req(conn, 'mine', [{ authors: [getPublicKey(sk)] }]);
    checkEq(r.events.map((e) => e.id), [ev.id], 'only the valid event was stored');

    // NIP-77 error paths.
    conn.send(['NEG-MSG', 'nobody', '6100000200']);
    let m = (await conn.take(forSub('nobody'), 'NEG-ERR')).msg;
    checkEq(m, ['NEG-ERR', 'nobody', 'closed: unknown subscription handle'], 'NEG-MSG for an unknown session');
    const empty = new nip77.NegentropyStorageVector();
    empty.seal();
    const init = new nip77.Negentropy(empty).initiate();
    conn.send(['NEG-OPEN', 'arr', [{ kinds: [1] }], init]);
    m = (await conn.take(isType('NOTICE'), 'NOTICE')).msg;
    check(/object/.test(m[1]), `NOTICE for a NEG-OPEN with an array filter: ${m[1]}`);
    conn.send(['NEG-OPEN', 'badhex', {}, 'zz']);
    m = (await conn.take(forSub('badhex'), 'NEG-ERR')).msg;
    check(m[0] === 'NEG-ERR' && /^\w+: /.test(m[2]), `NEG-ERR for bad hex: ${JSON.stringify(m)}`);
    conn.send(['NEG-OPEN', 'badneg', {}, '61ff']);
    m = (await conn.take(forSub('badneg'), 'NEG-ERR')).msg;
    check(m[0] === 'NEG-ERR' && /^\w+: /.test(m[2]), `NEG-ERR for a malformed negentropy message: ${JSON.stringify(m)}`);
    conn.send(['NEG-OPEN', 'badfilter', { kinds: 'x' }, init]);
    m = (await conn.take(forSub('badfilter'), 'NEG-ERR')).msg;
    check(m[0] === 'NEG-ERR', `NEG-ERR for a bad NEG-OPEN filter: ${JSON.stringify(m)}`);
    // After NEG-CLOSE, and after a NEG-ERR, the session is gone.
    conn.send(['NEG-OPEN', 'gone', {}, init]);
    await conn.take(isType('NEG-MSG', 'gone'), 'NEG-MSG');
    conn.send(['NEG-CLOSE', 'gone']);
    conn.send(['NEG-MSG', 'gone', init]);
    m = (await conn.take(forSub('gone'), 'NEG-ERR')).msg;
    checkEq(m, ['NEG-ERR', 'gone', 'closed: unknown subscription handle'], 'NEG-MSG after NEG-CLOSE');
    conn.send(['NEG-MSG', 'badneg', init]);
    m = (await conn.take(forSub('badneg'), 'NEG-ERR')).msg;
    checkEq(m, ['NEG-ERR', 'badneg', 'closed: unknown subscription handle'], 'NEG-MSG after a NEG-ERR');
    // NEG-OPEN on an open id replaces the session: the second filter decides.
    conn.send(['NEG-OPEN', 'again', { kinds: [12345] }, init]);
    await conn.take(isType('NEG-MSG', 'again'), 'NEG-MSG');
    const a0 = allEvents.filter((e) => e.pubkey === authors[1]);
    const rr = await negSync(conn, 'again', { authors: [authors[1]] }, [], 0);
    check(!rr.error && sameSet(rr.need, a0.map((e) => e.id)), 'a second NEG-OPEN replaces the session');

    // Messages that are not Nostr.
    conn.send('this is not json');
    m = (await conn.take(isType('NOTICE'), 'NOTICE')).msg;
    check(/invalid JSON/.test(m[1]), `NOTICE for invalid JSON: ${m[1]}`);
    conn.send(['WHAT', 1]);
    m = (await conn.take(isType('NOTICE'), 'NOTICE')).msg;
    check(/unknown/.test(m[1]), `NOTICE for an unknown command: ${m[1]}`);

    // Large messages: a 12 MiB event is taken, a message over 16 MiB is refused.
    const big = finalizeEvent({ kind: 1, created_at: 1710000003, tags: [], content: 'x'.repeat(12 << 20) }, sk);
    ok = await publish(conn, big);
    checkEq(ok, ['OK', big.id, true, ''], 'a 12 MiB event');
    r = await req(conn, 'big', [{ ids: [big.id] }]);
    check(r.events.length === 1 && r.events[0].content.length === 12 << 20, 'the 12 MiB event comes back');
    conn.send(JSON.stringify(['EVENT', { content: 'y'.repeat(17 << 20) }]));
    m = (await conn.take(isType('NOTICE'), 'NOTICE')).msg;
    check(/too large/.test(m[1]), `NOTICE for a 17 MiB message: ${m[1]}`);
    r = await req(conn, 'still-there', [{ limit: 2 }]);
    check(r.events.length === 2, 'the connection survives an oversize message');

    // The relay's byte counts are the payload bytes this side sent and received.
    const sent = conn.sentBytes;
    const received = conn.recvBytes;
    conn.close();
    await conn.waitClosed('close');
    const rec = await waitStats('nip01', (c) => c.rx_bytes === sent, 'record of this connection');
    checkEq([rec.rx_bytes, rec.tx_bytes], [sent, received], 'relay byte counts (rx, tx) vs the client');
};

// NIP-11 on a relay with --nip11-nips 1,11,77,42 --software S --version V.
scenarios.nip11 = async (url) => {
    const res = await httpGet(httpUrl(url), NOSTR_JSON);
    check(res.status === 200 && /application\/nostr\+json/.test(res.headers['content-type']), `NIP-11 status ${res.status} ${res.headers['content-type']}`);
    check(res.headers['access-control-allow-origin'] === '*', 'NIP-11 CORS header');
    const doc = JSON.parse(res.body.toString('utf8'));
    checkEq([doc.software, doc.version, doc.supported_nips], ['test-software', '9.9.9', [1, 11, 77, 42]], 'NIP-11 fields');
    check(doc.limitation?.max_limit === 500, 'NIP-11 limitation.max_limit is --req-limit');
    check(doc.negentropy === 1, `NIP-11 negentropy (protocol version) next to 77: ${doc.negentropy}`);
    const plain = await httpGet(httpUrl(url));
    check(plain.status === 200 && !/nostr\+json/.test(plain.headers['content-type'] || ''), 'no NIP-11 without the Accept header');
    // The websocket still works on the same port.
    const conn = await Conn.open(url);
    const r = await req(conn, 's', [{ limit: 1 }]);
    check(r.events.length === 1, 'REQ next to NIP-11');
    conn.close();
};

scenarios['nip11-absent'] = async (url) => {
    const res = await httpGet(httpUrl(url), NOSTR_JSON);
    check(res.status === 404, `--nip11=absent: status ${res.status}`);
};
scenarios['nip11-invalid'] = async (url) => {
    const res = await httpGet(httpUrl(url), NOSTR_JSON);
    let parsed = true;
    try {
        JSON.parse(res.body.toString('utf8'));
    } catch {
        parsed = false;
    }
    check(res.status === 200 && !parsed, '--nip11=invalid is not JSON');
};
scenarios['nip11-wrongtypes'] = async (url) => {
    const doc = JSON.parse((await httpGet(httpUrl(url), NOSTR_JSON)).body.toString('utf8'));
    check(typeof doc.software !== 'string' && !Array.isArray(doc.supported_nips) || (Array.isArray(doc.supported_nips) && doc.supported_nips.some((n) => typeof n !== 'number')),
        `--nip11=wrongtypes: ${JSON.stringify(doc)}`);
};
scenarios['nip11-huge'] = async (url) => {
    const res = await httpGet(httpUrl(url), NOSTR_JSON);
    check(res.body.length >= 5 << 20, `--nip11=huge is ${res.body.length} bytes`);
    check(typeof JSON.parse(res.body.toString('utf8')).name === 'string', '--nip11=huge is valid JSON');
};
scenarios['nip11-file'] = async (url) => {
    const res = await httpGet(httpUrl(url), NOSTR_JSON);
    check(res.body.toString('utf8') === '{"name": "from a file", "supported_nips": "77"}\n', `--nip11-file served verbatim: ${res.body}`);
};

// --no-nip77 modes: NEG-OPEN, then a REQ; what comes back, in order.
async function negOpenAnswer(url, expect) {
    const conn = await Conn.open(url);
    const empty = new nip77.NegentropyStorageVector();
    empty.seal();
    conn.send(['NEG-OPEN', 'probe', { kinds: [23456], limit: 0 }, new nip77.Negentropy(empty).initiate()]);
    await expect(conn);
    conn.close();
}
const firstIs = (want, what) => async (conn) => {
    const { msg } = await conn.next(what);
    checkEq(msg, want, what);
    conn.send(['REQ', 'after', { limit: 0 }]);
    checkEq((await conn.next('EOSE')).msg, ['EOSE', 'after'], `${what}: REQ still works`);
};
scenarios['no77-notice'] = (url) => negOpenAnswer(url, firstIs(['NOTICE', 'ERROR: bad msg: negentropy disabled'], '--no-nip77=notice'));
scenarios['no77-notice-text'] = (url) => negOpenAnswer(url, firstIs(['NOTICE', 'failed to parse envelope: unknown envelope label'], '--notice-text'));
scenarios['no77-unknown'] = (url) => negOpenAnswer(url, firstIs(['NOTICE', 'ERROR: bad msg: unknown cmd'], '--no-nip77=unknown'));
scenarios['no77-neg-err'] = (url) => negOpenAnswer(url, firstIs(['NEG-ERR', 'probe', 'blocked: Negentropy sync is disabled'], '--no-nip77=neg-err'));
scenarios['no77-closed'] = (url) => negOpenAnswer(url, async (conn) => {
    const { msg } = await conn.next('CLOSED');
    check(msg[0] === 'CLOSED' && msg[1] === 'probe' && /^\w+: ./.test(msg[2]), `--no-nip77=closed: ${JSON.stringify(msg)}`);
});
scenarios['no77-silent'] = (url) => negOpenAnswer(url, async (conn) => {
    conn.send(['REQ', 'after', { limit: 0 }]);
    checkEq((await conn.next('EOSE')).msg, ['EOSE', 'after'], '--no-nip77=silent: the REQ sent after NEG-OPEN is answered first');
    conn.send(['NEG-MSG', 'probe', '61']);
    conn.send(['NEG-CLOSE', 'probe']);
    conn.send(['REQ', 'after2', { limit: 0 }]);
    checkEq((await conn.next('EOSE')).msg, ['EOSE', 'after2'], '--no-nip77=silent: nothing for NEG-MSG or NEG-CLOSE either');
});
scenarios['no77-disconnect'] = (url) => negOpenAnswer(url, async (conn) => {
    await conn.waitClosed('--no-nip77=disconnect');
    check(conn.queue.length === 0, '--no-nip77=disconnect sends nothing before closing');
});

scenarios.welcome = async (url) => {
    const conn = await Conn.open(url);
    checkEq((await conn.next('welcome NOTICE')).msg, ['NOTICE', 'Welcome! Be nice.'], '--welcome-notice');
    const r = await negSync(conn, 'w', { limit: 0, kinds: [23456] }, [], 0);
    check(!r.error && r.rounds === 1, 'NEG works after the welcome notice');
    conn.close();
};

// --neg-err-after 1: one NEG-MSG reply per session, then NEG-ERR closed:.
scenarios['neg-err-after'] = async (url) => {
    const conn = await Conn.open(url);
    const empty = new nip77.NegentropyStorageVector();
    empty.seal();
    const init = new nip77.Negentropy(empty).initiate();
    conn.send(['NEG-OPEN', 'k', {}, init]);
    const first = (await conn.take(forSub('k'), 'NEG-MSG')).msg;
    check(first[0] === 'NEG-MSG', `--neg-err-after 1: first reply ${JSON.stringify(first).slice(0, 100)}`);
    conn.send(['NEG-MSG', 'k', init]);
    const second = (await conn.take(forSub('k'), 'NEG-ERR')).msg;
    check(second[0] === 'NEG-ERR' && second[2].startsWith('closed: '), `--neg-err-after 1: second reply ${JSON.stringify(second)}`);
    conn.send(['NEG-MSG', 'k', init]);
    checkEq((await conn.take(forSub('k'), 'NEG-ERR')).msg, ['NEG-ERR', 'k', 'closed: unknown subscription handle'], 'the session is gone after NEG-ERR');
    conn.close();
};

// --drop-after 3: three messages, then the connection closes.
scenarios['drop-after'] = async (url) => {
    const conn = await Conn.open(url);
    conn.send(['REQ', 'many', { limit: 10 }]);
    await conn.waitClosed('--drop-after 3');
    checkEq(conn.queue.length, 3, '--drop-after 3: messages before the close');
    check(conn.queue.every((m) => m.msg[0] === 'EVENT'), '--drop-after: the messages are whole');
};

// --delay-ms 1500: no reply comes sooner, and one slow connection does not
// hold up another (both replies are due at about the same time).
scenarios.delay = async (url) => {
    const a = await Conn.open(url);
    const b = await Conn.open(url);
    const t0 = Date.now();
    a.send(['REQ', 'a', { limit: 0 }]);
    b.send(['REQ', 'b', { limit: 0 }]);
    const ra = await a.next('EOSE a');
    const rb = await b.next('EOSE b');
    check(ra.at - t0 >= 1450 && rb.at - t0 >= 1450, `--delay-ms 1500: replies after ${ra.at - t0} and ${rb.at - t0} ms`);
    check(Math.abs(rb.at - ra.at) < 1400, `--delay-ms: the two connections were served one after the other (${ra.at - t0}, ${rb.at - t0} ms)`);
    a.close();
    b.close();
};

// --garbage 1: every reply is spoilt, in one of three ways: a junk frame
// before it, cut to its first half, or (NEG-MSG) bad hex. The 8 replies
// asked for below give 8 frames that are not junk, and 8 spoilings in all.
const JUNK = 'garbage{"this is":not json]';
scenarios.garbage = async (url) => {
    const conn = await Conn.open(url);
    conn.send(['REQ', 'g', { limit: 5 }]);
    const empty = new nip77.NegentropyStorageVector();
    empty.seal();
    conn.send(['NEG-OPEN', 'n', {}, new nip77.Negentropy(empty).initiate()]);
    conn.send(['REQ', 'end', { limit: 0 }]);
    let replies = 0;
    let junk = 0;
    let cut = 0;
    let badHex = 0;
    while (replies < 8) {
        const m = await conn.next('a frame');
        if (m.raw === JUNK) {
            junk++;
            continue;
        }
        replies++;
        if (m.msg === null) cut++;
        else if (m.msg[0] === 'NEG-MSG' && !/^[0-9a-f]*$/.test(m.msg[2])) badHex++;
    }
    check(junk + cut + badHex === 8, `--garbage 1: ${junk} junk frames, ${cut} cut, ${badHex} bad hex for 8 replies`);
    conn.close();
};

// --bad-events 1: every served event fails verification, the store is untouched.
scenarios['bad-events'] = async (url) => {
    const conn = await Conn.open(url);
    const r = await req(conn, 'b', [{ limit: 20 }]);
    check(r.events.length === 20, '--bad-events: events served');
    check(r.events.every((e) => getEventHash(e) !== e.id || !verifyEvent(e)), '--bad-events 1: every event is bad');
    const r2 = await req(conn, 'b2', [{ ids: r.events.map((e) => e.id).filter((id) => allEvents.some((x) => x.id === id)) }]);
    check(r2.events.length > 0, '--bad-events: the stored events keep their ids');
    conn.close();
};

// --tls: wss and https with a self-signed certificate (not verified here).
scenarios.tls = async (url) => {
    check(url.startsWith('wss://'), 'tls relay URL');
    const refused = await httpGet(url.replace(/^wss/, 'https'), NOSTR_JSON, true).then(() => null, (e) => e);
    check(refused && /self[- ]signed/i.test(refused.code + ' ' + refused.message), `a verifying client refuses the certificate: ${refused?.code}`);
    // The certificate is self-signed: this client does not verify it (negsync's own
    // tests check that negsync refuses it by default).
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    const conn = await Conn.open(url);
    const r = await negSync(conn, 't', { authors: [authors[2]] }, [], 0);
    check(!r.error && sameSet(r.need, allEvents.filter((e) => e.pubkey === authors[2]).map((e) => e.id)), 'NEG over wss');
    conn.close();
    const res = await httpGet(url.replace(/^wss/, 'https'), NOSTR_JSON);
    check(res.status === 200 && Array.isArray(JSON.parse(res.body.toString('utf8')).supported_nips), 'NIP-11 over https');
};

// --big-notice 1000000: the first message is a NOTICE of exactly that many bytes.
scenarios['big-notice'] = async (url) => {
    const conn = await Conn.open(url);
    const m = await conn.next('the big NOTICE');
    check(byteLen(m.raw) === 1000000 && m.msg?.[0] === 'NOTICE', `--big-notice: ${byteLen(m.raw)} bytes`);
    const r = await req(conn, 'after', [{ limit: 1 }]);
    check(r.events.length === 1, '--big-notice: the connection goes on');
    conn.close();
};

// --stall-after 1: the first message is answered, the rest are never read
// (tests/testrelay-interop.sh checks the relay's count once it has stopped).
scenarios.stall = async (url) => {
    const conn = await Conn.open(url);
    const r = await req(conn, 'first', [{ limit: 0 }]);
    check(!r.closed, '--stall-after: the first REQ is answered');
    for (let i = 0; i < 8; i++) conn.send(['REQ', `unread-${i}`, { '#t': ['x'.repeat(1 << 20)] }]);
    conn.send(['REQ', 'last', { limit: 0 }]);
    // A second connection is served meanwhile: one stalled peer holds up no one.
    const other = await Conn.open(url);
    check(!(await req(other, 'other', [{ limit: 0 }])).closed, '--stall-after: another connection is served');
    other.close();
    conn.close();
};

// --deflate: permessage-deflate is negotiated, and the byte counts are of
// the payload before compression, as the client sees it.
scenarios.deflate = async (url) => {
    const conn = await Conn.open(url);
    check(/permessage-deflate/.test(conn.ws.extensions), `--deflate: extensions "${conn.ws.extensions}"`);
    const r = await req(conn, 'd', [{ limit: 300 }]);
    check(r.events.length === 300 && r.events.every((e) => verifyEvent(e)), '--deflate: 300 events');
    const big = finalizeEvent({ kind: 1, created_at: 1710000009, tags: [], content: 'z'.repeat(3 << 20) + randHex(64) }, generateSecretKey());
    checkEq(await publish(conn, big), ['OK', big.id, true, ''], '--deflate: a 3 MiB event, compressed');
    const back = await req(conn, 'back', [{ ids: [big.id] }]);
    check(back.events.length === 1 && back.events[0].content === big.content, '--deflate: the 3 MiB event comes back');
    const sent = conn.sentBytes;
    const received = conn.recvBytes;
    conn.close();
    await conn.waitClosed('close');
    const rec = await waitStats('deflate', (c) => c.rx_bytes === sent, 'record of this connection');
    checkEq([rec.rx_bytes, rec.tx_bytes], [sent, received], '--deflate: relay byte counts (rx, tx) vs the client');
};

// SIGUSR1 writes the stats with the connections still open.
scenarios.usr1 = async (url) => {
    const conn = await Conn.open(url);
    const r = await req(conn, 'u', [{ limit: 7 }]);
    check(r.events.length === 7, 'usr1: REQ');
    const path = process.env.RELAY_STATS_usr1;
    rmSync(path, { force: true });
    process.kill(Number(process.env.RELAY_PID_usr1), 'SIGUSR1');
    const rec = await waitStats('usr1', (c) => c.open === true, 'an open connection after SIGUSR1');
    checkEq([rec.rx_bytes, rec.tx_bytes, rec.rx_msgs, rec.tx_msgs, rec.tx.EVENT],
        [conn.sentBytes, conn.recvBytes, 1, 8, 7], 'SIGUSR1: counts of the open connection');
    conn.close();
};

// --db FILE: what one relay stored, the next one started on the file still has.
const persistKey = new Uint8Array(32).fill(7);
const persistEvent = finalizeEvent({ kind: 1, created_at: 1720000000, tags: [], content: 'kept on disk' }, persistKey);
scenarios['db-put'] = async (url) => {
    const conn = await Conn.open(url);
    checkEq(await publish(conn, persistEvent), ['OK', persistEvent.id, true, ''], '--db: EVENT');
    conn.close();
};
scenarios['db-get'] = async (url) => {
    const conn = await Conn.open(url);
    const r = await req(conn, 'p', [{ authors: [persistEvent.pubkey] }]);
    checkEq(r.events.map((e) => e.id), [persistEvent.id], '--db: the event survived a restart');
    conn.close();
};

// ---------------------------------------------------------------- main

let status = 0;
for (const [name, url] of Object.entries(relays)) {
    const fn = scenarios[name];
    if (!fn) {
        console.error(`FAIL: no scenario ${name}`);
        status = 1;
        continue;
    }
    const before = failures;
    try {
        await fn(url);
    } catch (e) {
        failures++;
        console.error(`FAIL: ${name}: ${e.stack || e}`);
    }
    console.log(`${failures === before ? 'ok' : 'FAILED'}: ${name} (${url})`);
}
console.log(`${checks} checks, ${failures} failed`);
process.exit(status || (failures ? 1 : 0));

// ws-deflate-proxy.mjs — the `ws` package's websocket server (what nostream
// and other Node relays run) in front of negsync-testrelay, so negsync's
// client meets an independent permessage-deflate implementation.
//
//   node ws-deflate-proxy.mjs --upstream ws://127.0.0.1:PORT [--nostream | --sliding-window]
//
// --nostream: nostream 2.0's settings: server_no_context_takeover,
//   client_no_context_takeover, a 1 KiB window-bits cap of 10 and a 1024-byte
//   threshold below which messages go uncompressed (RSV1 clear).
// --sliding-window: both sides keep their window across messages and every
//   message is compressed, as strfry's uWebSockets does by default.
//
// Every text message is passed through unchanged in both directions; an HTTP
// GET (NIP-11) is forwarded to the upstream's HTTP side. Prints
// "listening on 127.0.0.1:PORT" first. Ignores --port/--stats-file, so
// tests/relay-lib.sh's start_relay can start it. SIGTERM stops it.
import http from 'node:http';
import { importPeer } from './peers.mjs';

const { WebSocketServer, WebSocket } = await importPeer('ws');

const args = process.argv.slice(2);
let upstream = null;
let mode = 'nostream';
for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--upstream') upstream = args[++i];
    else if (a === '--nostream') mode = 'nostream';
    else if (a === '--sliding-window') mode = 'sliding-window';
    else if (a === '--port' || a === '--stats-file') i++;
    else {
        console.error(`ws-deflate-proxy: unknown argument ${a}`);
        process.exit(2);
    }
}
if (!upstream) {
    console.error('ws-deflate-proxy: --upstream ws://HOST:PORT is required');
    process.exit(2);
}
const up = new URL(upstream);

const perMessageDeflate =
    mode === 'nostream'
        ? {
              zlibDeflateOptions: { chunkSize: 1024, memLevel: 7, level: 3 },
              zlibInflateOptions: { chunkSize: 10 * 1024 },
              clientNoContextTakeover: true,
              serverNoContextTakeover: true,
              serverMaxWindowBits: 10,
              concurrencyLimit: 10,
              threshold: 1024,
          }
        : { serverNoContextTakeover: false, clientNoContextTakeover: false, threshold: 0 };

const server = http.createServer((req, res) => {
    const fwd = http.request(
        { host: up.hostname, port: up.port, path: req.url, method: req.method, headers: req.headers },
        (r) => {
            res.writeHead(r.statusCode, r.headers);
            r.pipe(res);
        },
    );
    fwd.on('error', () => {
        res.writeHead(502);
        res.end();
    });
    req.pipe(fwd);
});
const wss = new WebSocketServer({ server, perMessageDeflate, maxPayload: 64 * 1024 * 1024 });

wss.on('connection', (client, req) => {
    const relay = new WebSocket(new URL(req.url, upstream).href, { perMessageDeflate: false });
    const pending = [];
    relay.on('open', () => {
        for (const m of pending) relay.send(m);
        pending.length = 0;
    });
    client.on('message', (data, isBinary) => {
        const m = isBinary ? data : data.toString();
        if (relay.readyState === WebSocket.OPEN) relay.send(m);
        else pending.push(m);
    });
    relay.on('message', (data, isBinary) => {
        if (client.readyState === WebSocket.OPEN) client.send(isBinary ? data : data.toString());
    });
    const end = () => {
        if (client.readyState === WebSocket.OPEN) client.close();
        if (relay.readyState === WebSocket.OPEN || relay.readyState === WebSocket.CONNECTING)
            relay.terminate();
    };
    client.on('close', end);
    relay.on('close', end);
    client.on('error', end);
    relay.on('error', end);
});

server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`listening on 127.0.0.1:${server.address().port}\n`);
});
const stop = () => {
    for (const c of wss.clients) c.terminate();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

#!/bin/sh
# Compressed connections, as the relays out there make them. negsync's own
# websocket client (src/ws.c) against four permessage-deflate servers:
#
#   lws-sliding   the test relay --deflate: libwebsockets keeping its window
#                 across messages (strfry's default sliding window)
#   lws-nostream  the test relay --deflate-no-context-takeover: a fresh
#                 compressor per message, server_no_context_takeover, and
#                 messages under 1024 bytes sent uncompressed
#   ws-nostream   the npm `ws` server with nostream 2.0's settings, proxying
#                 to the test relay (an independent deflate implementation)
#   ws-sliding    the npm `ws` server keeping its window, every message
#                 compressed
#
# The libwebsockets 4.1 client that negsync used before never consumed an
# uncompressed frame on a deflate connection: against lws-nostream and
# ws-nostream the probe spun until the kernel killed it. Here, for each
# server: the probe, a negentropy sync with uploads, and a REQ sync all end
# with the right events, within a deadline and a memory ceiling, and the
# wire carried fewer bytes than the payload (compression was in use).
. "${top_srcdir:-.}/tests/sync-lib.sh"
. "$top_srcdir/tests/bounded-lib.sh"

MAX_MB=${NEGSYNC_TEST_MAX_RSS_MB:-600}

"$GEN" -n 2000 -k 20 -s 20000 -S 31 -R >"$WORK/relay.jsonl" || fail "gen-events"
"$GEN" -n 100 -k 3 -s 20000 -S 32 -R >"$WORK/mine.jsonl" || fail "gen-events"
awk 'NR % 10 != 0' "$WORK/relay.jsonl" >"$WORK/local.jsonl"
ids_of_file "$WORK/relay.jsonl" >"$WORK/want"
ids_of_file "$WORK/mine.jsonl" >>"$WORK/want"
sort -o "$WORK/want" "$WORK/want"


# check_flavour NAME: the relay (or proxy) is at $URL, upstream stats in $STATS.
check_flavour() {
    name=$1
    rm -f "$WORK/db" "$WORK/db-wal" "$WORK/db-shm" "$WORK/req.db"*
    "$NEGSYNC" -d "$WORK/db" import "$WORK/local.jsonl" >/dev/null || fail "$name: import"
    "$NEGSYNC" -d "$WORK/db" import "$WORK/mine.jsonl" >/dev/null || fail "$name: import"
    sync_config "$WORK/c.ini" direction=both
    printf '[relay %s]\n[filter notes]\nkinds = 1\n' "$URL" >>"$WORK/c.ini"

    run_bounded 60 "$MAX_MB" "$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" probe --force --json \
        >"$WORK/probe.json" 2>"$WORK/probe.err" || fail "$name: probe: $BOUNDED_WHY"
    grep -q '"negentropy":"supported"' "$WORK/probe.json" ||
        fail "$name: probe: $(cat "$WORK/probe.json" "$WORK/probe.err")"

    run_bounded 120 "$MAX_MB" "$NEGSYNC" -c "$WORK/c.ini" -d "$WORK/db" sync --once --json \
        >"$WORK/neg.json" 2>"$WORK/neg.err" || fail "$name: negentropy sync: $BOUNDED_WHY"
    [ "$BOUNDED_RC" = 0 ] || fail "$name: negentropy sync exit $BOUNDED_RC: $(cat "$WORK/neg.json" "$WORK/neg.err")"
    l=$(jline "$WORK/neg.json" "$URL")
    expect_eq "$name: mode" "$(jstr "$l" mode)" negentropy
    expect_eq "$name: result" "$(jstr "$l" result)" ok
    expect_eq "$name: fetched" "$(jnum "$l" fetched)" 200
    expect_eq "$name: uploaded" "$(jnum "$l" uploaded)" 100
    ids_of_db "$WORK/db" >"$WORK/got"
    cmp -s "$WORK/want" "$WORK/got" || fail "$name: the local set is not relay + ours"
    wr=$(jnum "$l" wire_received) br=$(jnum "$l" bytes_received)
    [ "$wr" -lt "$br" ] || fail "$name: wire $wr >= payload $br bytes received: no compression?"
    echo "$name: negentropy: payload $br bytes received, wire $wr (peak ${BOUNDED_PEAK_MB} MB)"

    # REQ from nothing: the relay's 2000 and the 100 we uploaded.
    sync_config "$WORK/r.ini" direction=down
    printf '[relay %s]\nnegentropy = off\n[filter notes]\nkinds = 1\n' "$URL" >>"$WORK/r.ini"
    run_bounded 120 "$MAX_MB" "$NEGSYNC" -c "$WORK/r.ini" -d "$WORK/req.db" sync --once --json \
        >"$WORK/req.json" 2>"$WORK/req.err" || fail "$name: REQ sync: $BOUNDED_WHY"
    [ "$BOUNDED_RC" = 0 ] || fail "$name: REQ sync exit $BOUNDED_RC: $(cat "$WORK/req.json" "$WORK/req.err")"
    l=$(jline "$WORK/req.json" "$URL")
    expect_eq "$name: REQ mode" "$(jstr "$l" mode)" req
    ids_of_db "$WORK/req.db" >"$WORK/got"
    cmp -s "$WORK/want" "$WORK/got" || fail "$name: REQ did not get the relay's events and our uploads"
    wr=$(jnum "$l" wire_received) br=$(jnum "$l" bytes_received)
    # Under nostream's 1024-byte threshold most events travel uncompressed.
    case $name in
    *sliding*) [ "$wr" -lt "$br" ] || fail "$name: REQ wire $wr >= payload $br: no compression?" ;;
    esac
    echo "$name: REQ: payload $br bytes received, wire $wr (peak ${BOUNDED_PEAK_MB} MB)"
}

for_each_deflate_server "$WORK/relay.jsonl" check_flavour
echo "ok: every deflate server, both modes, bounded"

-- A database written by negsync at schema version 1 (sqlite3 .dump), for the
-- migration test in tests/test-store.c: 5 events by two authors (6 signed, one
-- replaced), one with a repeated tag, replaceable and addressable kinds.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE events (  seq INTEGER PRIMARY KEY,  id BLOB NOT NULL UNIQUE CHECK (length(id) = 32),  pubkey BLOB NOT NULL CHECK (length(pubkey) = 32),  created_at INTEGER NOT NULL,  kind INTEGER NOT NULL,  dtag TEXT,  json TEXT NOT NULL);
INSERT INTO events VALUES(1,X'2476cf7be6bd4ec02b9797c42e40d7ff7159ce34510751fd1eeacbc55f8e6263',X'6930f46dd0b16d866d59d1054aa63298b357499cd1862ef16f3f55f1cafceb82',1000,1,NULL,'{"id":"2476cf7be6bd4ec02b9797c42e40d7ff7159ce34510751fd1eeacbc55f8e6263","pubkey":"6930f46dd0b16d866d59d1054aa63298b357499cd1862ef16f3f55f1cafceb82","created_at":1000,"kind":1,"tags":[["t","fixture"],["t","fixture"],["p","4242424242424242424242424242424242424242424242424242424242424242"]],"content":"a note with a repeated tag","sig":"9d71980733f983dd99165c592622130513e1fca0596d34fef171594f2172e62d73cee124b6b6ae78c5f9b10c9d70d47a8d1cf49841373968fc632ef9f3fcfac9"}');
INSERT INTO events VALUES(2,X'686730f6d87c2d16aa563addf0fe1262903210ac74ed72bdef743e184b7fed26',X'6930f46dd0b16d866d59d1054aa63298b357499cd1862ef16f3f55f1cafceb82',1002,0,NULL,'{"id":"686730f6d87c2d16aa563addf0fe1262903210ac74ed72bdef743e184b7fed26","pubkey":"6930f46dd0b16d866d59d1054aa63298b357499cd1862ef16f3f55f1cafceb82","created_at":1002,"kind":0,"tags":[],"content":"{\"name\":\"profile v1\"}","sig":"329fc624c1b91f2157cfa71690912e928ddab92552ee378ad351f406def3a16eff3163167a7fdb6d009525d64cd261367025fe3613cb30eff2783f80f0b954af"}');
INSERT INTO events VALUES(3,X'f523b0d0b6d0c776c057a724c496c4b31d7962480cad07bacb9ba2edb63183c5',X'6930f46dd0b16d866d59d1054aa63298b357499cd1862ef16f3f55f1cafceb82',1003,30023,'post','{"id":"f523b0d0b6d0c776c057a724c496c4b31d7962480cad07bacb9ba2edb63183c5","pubkey":"6930f46dd0b16d866d59d1054aa63298b357499cd1862ef16f3f55f1cafceb82","created_at":1003,"kind":30023,"tags":[["d","post"],["t","fixture"]],"content":"article v1","sig":"48010138c3731aa898d09af5c4764ec3e8b80e4654954ced1b80b1bd61dd2157415a024fe1349aa6a4d4a8f6272d39371ccad40c99940634eaae3d20d680b978"}');
INSERT INTO events VALUES(4,X'22a78912f3f58e18d59f20be24caa710da95415c5ab9cfda73e33eee04ff59bc',X'24653eac434488002cc06bbfb7f10fe18991e35f9fe4302dbea6d2353dc0ab1c',1004,10002,NULL,'{"id":"22a78912f3f58e18d59f20be24caa710da95415c5ab9cfda73e33eee04ff59bc","pubkey":"24653eac434488002cc06bbfb7f10fe18991e35f9fe4302dbea6d2353dc0ab1c","created_at":1004,"kind":10002,"tags":[],"content":"relay list","sig":"87a8ba7e94ba2888005c929f4812e6ee83904fd2ec273a5f05700818a14aecd675db48ca3d9ebbdcdd64cfdb5cb706d308ddf21a355f5b50f5e6e9e561feb065"}');
INSERT INTO events VALUES(5,X'f87d826e56d29593a2ca3cc51e209a13e52890841256c4bcba81f6e599e059db',X'24653eac434488002cc06bbfb7f10fe18991e35f9fe4302dbea6d2353dc0ab1c',1005,1,NULL,'{"id":"f87d826e56d29593a2ca3cc51e209a13e52890841256c4bcba81f6e599e059db","pubkey":"24653eac434488002cc06bbfb7f10fe18991e35f9fe4302dbea6d2353dc0ab1c","created_at":1005,"kind":1,"tags":[],"content":"plain note by b","sig":"07aa8668a6313b7822ea0a50363af39730297e73e624558f184624f8272e5f8940e2b94c9857d30bb2595066c19bac408a85d9aa5d1c2cf93d477737fd771460"}');
CREATE TABLE tags (  seq INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,  name TEXT NOT NULL,  value TEXT NOT NULL);
INSERT INTO tags VALUES(1,'t','fixture');
INSERT INTO tags VALUES(1,'t','fixture');
INSERT INTO tags VALUES(1,'p','4242424242424242424242424242424242424242424242424242424242424242');
INSERT INTO tags VALUES(3,'d','post');
INSERT INTO tags VALUES(3,'t','fixture');
CREATE TABLE deletions (  seq INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,  pubkey BLOB NOT NULL,  created_at INTEGER NOT NULL,  target_id BLOB,  target_addr TEXT,  CHECK ((target_id IS NULL) <> (target_addr IS NULL)));
CREATE TABLE address_heads (  pubkey BLOB NOT NULL,  kind INTEGER NOT NULL,  dtag TEXT NOT NULL,  created_at INTEGER NOT NULL,  id BLOB NOT NULL,  PRIMARY KEY (pubkey, kind, dtag)) WITHOUT ROWID;
CREATE TABLE relay_caps (  relay TEXT PRIMARY KEY,  supported INTEGER NOT NULL,  reason TEXT,  checked_at INTEGER NOT NULL,  latency_ms INTEGER,  nip11_software TEXT,  nip11_version TEXT,  nip11_supported_nips TEXT,  nip11_raw TEXT);
CREATE TABLE req_cursors (  relay TEXT NOT NULL,  filter_name TEXT NOT NULL,  filter_json TEXT NOT NULL,  cursor INTEGER NOT NULL DEFAULT 0,  PRIMARY KEY (relay, filter_name));
CREATE TABLE sync_runs (  run INTEGER PRIMARY KEY,  relay TEXT NOT NULL,  filter TEXT NOT NULL,  mode TEXT NOT NULL,  fallback_reason TEXT,  started INTEGER NOT NULL,  duration_ms INTEGER NOT NULL DEFAULT 0,  rounds INTEGER NOT NULL DEFAULT 0,  bytes_sent INTEGER NOT NULL DEFAULT 0,  bytes_received INTEGER NOT NULL DEFAULT 0,  wire_sent INTEGER NOT NULL DEFAULT 0,  wire_received INTEGER NOT NULL DEFAULT 0,  est_req_bytes INTEGER NOT NULL DEFAULT 0,  have INTEGER NOT NULL DEFAULT 0,  need INTEGER NOT NULL DEFAULT 0,  fetched INTEGER NOT NULL DEFAULT 0,  stored INTEGER NOT NULL DEFAULT 0,  duplicates INTEGER NOT NULL DEFAULT 0,  invalid INTEGER NOT NULL DEFAULT 0,  uploaded_ok INTEGER NOT NULL DEFAULT 0,  uploaded_rejected INTEGER NOT NULL DEFAULT 0,  result TEXT,  error TEXT);
CREATE TABLE relay_settings (  relay TEXT PRIMARY KEY,  negentropy TEXT NOT NULL DEFAULT 'auto' CHECK (negentropy IN ('auto', 'on', 'off')));
CREATE INDEX events_created ON events(created_at, id);
CREATE INDEX events_pubkey_kind ON events(pubkey, kind, created_at);
CREATE INDEX events_kind ON events(kind, created_at);
CREATE INDEX events_address ON events(pubkey, kind, dtag);
CREATE INDEX tags_name_value ON tags(name, value, seq);
CREATE INDEX tags_seq ON tags(seq);
CREATE INDEX deletions_target_id ON deletions(target_id, pubkey);
CREATE INDEX deletions_target_addr ON deletions(target_addr, created_at);
CREATE INDEX deletions_seq ON deletions(seq);
CREATE INDEX sync_runs_relay ON sync_runs(relay, started);
COMMIT;
PRAGMA user_version = 1;

/*
 * store-int.h: what the store's own files share and nothing else includes.
 * store.c owns struct store; store-meta.c (the sync engine's and caps' tables)
 * reaches its connection through this.
 */
#ifndef NEGSYNC_STORE_INT_H
#define NEGSYNC_STORE_INT_H

#include <sqlite3.h>

#include "store.h"

/* The connection of st; it stays st's. */
sqlite3 *store_connection(struct store *st);

#endif

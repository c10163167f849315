package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" database/sql driver
)

const (
	schemaVersion = "1"

	// walAutocheckpointPages is how many WAL pages accumulate before the
	// committing connection copies them into the database file. Measured
	// with 64 concurrent appenders at 1000 (the SQLite default), 4000 and
	// 16000 pages: no difference beyond this disk's run-to-run noise, so
	// the default is kept, stated explicitly so it is a visible knob.
	walAutocheckpointPages = 1000

	busyTimeoutMillis = 10000
)

// schemaStatements are applied in one transaction on every open; each is
// idempotent.
func schemaStatements() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ledger_meta (
		key   TEXT PRIMARY KEY,
		value TEXT NOT NULL
	)`,
		`CREATE TABLE IF NOT EXISTS entries (
		idx       INTEGER PRIMARY KEY,
		data      BLOB NOT NULL,
		leaf_hash BLOB NOT NULL
	)`,
		`CREATE TABLE IF NOT EXISTS checkpoints (
		size       INTEGER PRIMARY KEY,
		root       BLOB NOT NULL,
		note       BLOB NOT NULL,
		created_ns INTEGER NOT NULL
	)`,
		// Guards against accidental mutation. They do not stop an attacker with
		// write access to the file; the tree and signatures detect that.
		`CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
		BEGIN SELECT RAISE(ABORT, 'ledger: entries are append-only'); END`,
		`CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
		BEGIN SELECT RAISE(ABORT, 'ledger: entries are append-only'); END`,
		`CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
		BEGIN SELECT RAISE(ABORT, 'ledger: checkpoints are append-only'); END`,
		`CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
		BEGIN SELECT RAISE(ABORT, 'ledger: checkpoints are append-only'); END`,
	}
}

const (
	sqlInsertEntry      = `INSERT INTO entries (idx, data, leaf_hash) VALUES (?, ?, ?)`
	sqlInsertCheckpoint = `INSERT INTO checkpoints (size, root, note, created_ns) VALUES (?, ?, ?, ?)`
	sqlSelectData       = `SELECT data FROM entries WHERE idx = ?`
	sqlScanData         = `SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx`
	sqlSelectCheckpoint = `SELECT note FROM checkpoints WHERE size = ?`
	sqlNewestCheckpoint = `SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1`
	sqlLeafHashes       = `SELECT idx, leaf_hash FROM entries ORDER BY idx`
)

type dsnMode int

const (
	dsnWriter   dsnMode = iota // read-write, creates the file, WAL + synchronous=FULL
	dsnReader                  // in-process reader next to a writer
	dsnReadOnly                // offline verification: never writes the file
)

// dsn builds a modernc.org/sqlite URI for path. The path is escaped so that
// characters such as '?' and '#' in file names are not taken as URI syntax.
func dsn(path string, mode dsnMode) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("ledger: resolve path %q: %w", path, err)
	}
	u := url.URL{Path: filepath.ToSlash(abs)}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.Itoa(busyTimeoutMillis)+")")
	switch mode {
	case dsnWriter:
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(FULL)")
		q.Add("_pragma", "wal_autocheckpoint("+strconv.Itoa(walAutocheckpointPages)+")")
		q.Set("_txlock", "immediate")
	case dsnReader:
		q.Add("_pragma", "query_only(1)")
	case dsnReadOnly:
		q.Set("mode", "ro")
		q.Add("_pragma", "query_only(1)")
	}
	return "file:" + u.EscapedPath() + "?" + q.Encode(), nil
}

// openWriterDB opens the single connection the writer uses and checks that
// the durability settings took effect.
func openWriterDB(ctx context.Context, path string) (*sql.DB, error) {
	name, err := dsn(path, dsnWriter)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", name)
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	// One connection: prepared statements stay bound to it, and SQLite
	// allows one writer anyway.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	var journal string
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&journal); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: open %s: read journal_mode: %w", path, err)
	}
	var syncMode int
	if err := db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&syncMode); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: open %s: read synchronous: %w", path, err)
	}
	if journal != "wal" || syncMode != 2 {
		db.Close()
		return nil, fmt.Errorf("ledger: open %s: journal_mode=%s synchronous=%d, need wal and 2 (FULL)", path, journal, syncMode)
	}
	return db, nil
}

// initSchema creates the tables on a new database and checks the origin and
// schema version of an existing one. created reports a new database.
func initSchema(ctx context.Context, db *sql.DB, origin string) (created bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("ledger: begin schema transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, stmt := range schemaStatements() {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return false, fmt.Errorf("ledger: create schema: %w", err)
		}
	}
	meta := map[string]string{}
	rows, err := tx.QueryContext(ctx, `SELECT key, value FROM ledger_meta`)
	if err != nil {
		return false, fmt.Errorf("ledger: read metadata: %w", err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return false, fmt.Errorf("ledger: read metadata: %w", err)
		}
		meta[k] = v
	}
	if err := rows.Close(); err != nil {
		return false, fmt.Errorf("ledger: read metadata: %w", err)
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("ledger: read metadata: %w", err)
	}
	if len(meta) == 0 {
		for k, v := range map[string]string{"schema_version": schemaVersion, "origin": origin} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_meta (key, value) VALUES (?, ?)`, k, v); err != nil {
				return false, fmt.Errorf("ledger: write metadata: %w", err)
			}
		}
		created = true
	} else {
		if v := meta["schema_version"]; v != schemaVersion {
			return false, fmt.Errorf("ledger: database schema version %q, this build supports %q", v, schemaVersion)
		}
		if o := meta["origin"]; o != origin {
			return false, fmt.Errorf("ledger: database belongs to log %q, not %q", o, origin)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("ledger: commit schema: %w", err)
	}
	return created, nil
}

// readOrigin returns the origin recorded in a database's metadata.
func readOrigin(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (string, error) {
	var origin string
	err := q.QueryRowContext(ctx, `SELECT value FROM ledger_meta WHERE key = 'origin'`).Scan(&origin)
	if errors.Is(err, sql.ErrNoRows) {
		return "", errors.New("ledger: not a ledger database: no origin in ledger_meta")
	}
	if err != nil {
		return "", fmt.Errorf("ledger: read origin (is this a ledger database?): %w", err)
	}
	return origin, nil
}

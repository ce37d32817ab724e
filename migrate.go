// migrate.go applies schema.sql's numbered migrations at start: each once, in order, recorded in schema_migrations.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed schema.sql
var schemaSQL string

// migration is one numbered section of schema.sql.
type migration struct {
	version int
	name    string
	sql     string
	sha256  [32]byte // of sql, recorded when applied
}

// migrationHeader starts each migration: "-- migration N: what it does".
var migrationHeader = regexp.MustCompile(`(?m)^-- migration (\d+): (.+)$`)

// parseMigrations splits a schema at its migration headers; the versions must
// count up from 1 without a gap. Text before the first header is a comment.
func parseMigrations(schema string) ([]migration, error) {
	bodies := migrationHeader.Split(schema, -1)[1:]
	var ms []migration
	for i, h := range migrationHeader.FindAllStringSubmatch(schema, -1) {
		if h[1] != strconv.Itoa(i+1) {
			return nil, fmt.Errorf("schema.sql: migration %q should be number %d", h[1], i+1)
		}
		sql := strings.TrimSpace(bodies[i])
		ms = append(ms, migration{i + 1, h[2], sql, sha256.Sum256([]byte(sql))})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("schema.sql: no migrations")
	}
	return ms, nil
}

// migrate waits for the database with backoff until ctx ends, then applies the
// migrations it has not recorded in one transaction under an advisory lock: replicas
// starting together take turns, and a failed migration leaves nothing half done. A
// pre-release database is refused (errPreRelease), untouched; a recorded migration past
// the first whose text has changed, or one unknown here (a rollback), is only logged.
func (s *store) migrate(ctx context.Context, log *slog.Logger) error {
	migrations, err := parseMigrations(schemaSQL)
	if err != nil {
		return err
	}
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if err = s.ping(ctx); err == nil {
			break
		}
		log.Warn("waiting for the database", "attempt", attempt, "err", err.Error())
		select {
		case <-ctx.Done():
			return fmt.Errorf("database not reachable within the startup timeout (check DATABASE_URL): %w", err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
	// The first statement as the store sends them (pooler.go's query mode): a
	// setting in DATABASE_URL that stops pgx from running any is refused here,
	// not answered with 500s. Tasks hold any Unicode text, and search folds it
	// with ICU: a database in SQL_ASCII (initdb --locale=C without -E) cannot.
	var encoding string
	switch err := s.pool.QueryRow(ctx, `SHOW server_encoding`).Scan(&encoding); {
	case err != nil:
		return fmt.Errorf("DATABASE_URL: a statement cannot run with these settings: %w", err)
	case encoding != "UTF8":
		return fmt.Errorf("the database's encoding is %s; the service needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)", encoding)
	}
	if err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return applyMigrations(ctx, tx, migrations, log) }); err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	return nil
}

// errPreRelease refuses a database holding tables this service did not make: no path leads from them.
var errPreRelease = errors.New("the database holds tables this version of the tasks API did not make (a build before 1.0, or another program: its schema_migrations, if any, does not match 1.0's); nothing was changed: point DATABASE_URL at a new, empty database")

// foreign reports whether err, reading schema_migrations or applying migration 1
// to a database that recorded none, says another schema is there: a column
// missing (SQLSTATE 42703), or a table, object or function there already (42P07, 42710, 42723).
func foreign(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && slices.Contains([]string{"42703", "42P07", "42710", "42723"}, pgErr.Code)
}

// applyMigrations records and runs, inside tx, each migration the database has not recorded.
func applyMigrations(ctx context.Context, tx pgx.Tx, migrations []migration, log *slog.Logger) error {
	// The simple protocol throughout (an Exec without arguments, its statements in order): no named
	// statement is left on a server connection that a transaction-mode pooler would hand to another replica.
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7031945862);
		CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		sha256     bytea       NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return err
	}
	rows, _ := tx.Query(ctx, `SELECT version, sha256 FROM schema_migrations ORDER BY version`, pgx.QueryExecModeSimpleProtocol)
	done := map[int]bool{}
	var version int
	var sum []byte
	_, err = pgx.ForEachRow(rows, []any{&version, &sum}, func() error {
		switch {
		case len(done) == 0 && (version != 1 || !bytes.Equal(sum, migrations[0].sha256[:])): // the lowest
			return errPreRelease
		case version > len(migrations):
			log.Warn("the database has a migration this binary does not know; serving anyway", "version", version)
		case !bytes.Equal(sum, migrations[version-1].sha256[:]):
			log.Warn("a migration was edited after it was applied; edits never reach a database, add a new migration instead", "version", version)
		}
		done[version] = true
		return nil
	})
	if foreign(err) {
		return errPreRelease
	} else if err != nil {
		return err
	}
	for _, m := range migrations {
		if done[m.version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); m.version == 1 && foreign(err) {
			return errPreRelease
		} else if err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)`,
			pgx.QueryExecModeSimpleProtocol, m.version, m.name, m.sha256[:])
		if err != nil {
			return err
		}
		log.Info("migration applied", "version", m.version, "name", m.name)
	}
	return nil
}

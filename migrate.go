// migrate.go applies schema.sql's numbered migrations at start: each once, in order, recorded in schema_migrations.
package main

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
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

// migrationHeader starts each migration: "-- migration 3: what it does".
var migrationHeader = regexp.MustCompile(`(?m)^-- migration (\d+): (.+)$`)

// parseMigrations splits a schema at its migration headers; the versions must
// count up from 1 without a gap. Text before the first header is a comment.
func parseMigrations(schema string) ([]migration, error) {
	bodies := migrationHeader.Split(schema, -1)[1:]
	var ms []migration
	for i, h := range migrationHeader.FindAllStringSubmatch(schema, -1) {
		version, err := strconv.Atoi(h[1])
		if err != nil || version != i+1 {
			return nil, fmt.Errorf("schema.sql: migration %q should be number %d", h[1], i+1)
		}
		sql := strings.TrimSpace(bodies[i])
		ms = append(ms, migration{version, h[2], sql, sha256.Sum256([]byte(sql))})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("schema.sql: no migrations")
	}
	return ms, nil
}

// migrate waits for the database with backoff until ctx ends, then applies the
// migrations it has not recorded in one transaction under an advisory lock, so
// that replicas starting together take turns and a failed migration leaves
// nothing half done. A pre-release database is refused (errPreRelease) and left
// as it is; a recorded migration past the first whose text has changed, or one
// this binary does not know (a rollback), is logged and the service starts.
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
	// Tasks hold any Unicode text, and search folds it with ICU: a database in
	// SQL_ASCII (what initdb --locale=C gives without -E) or LATIN1 cannot.
	var encoding string
	err = s.pool.QueryRow(ctx, `SHOW server_encoding`, pgx.QueryExecModeExec).Scan(&encoding) // unnamed, as the simple protocol needs UTF8
	if err == nil && encoding != "UTF8" {
		return fmt.Errorf("the database's encoding is %s; the service needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)", encoding)
	}
	if err == nil {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return applyMigrations(ctx, tx, migrations, log) })
	}
	if err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	return nil
}

// errPreRelease refuses a database made before 1.0: its schema is not 1.0's, and no path leads from it.
var errPreRelease = errors.New("the database holds tables of a pre-release build of the tasks API (schema_migrations does not match version 1.0); nothing was changed: point DATABASE_URL at a new, empty database")

// checkRelease refuses a database whose migration 1 is not first's, or that
// holds a tasks table without having recorded any migration.
func checkRelease(ctx context.Context, tx pgx.Tx, applied []migration, first migration) error {
	if len(applied) > 0 {
		if applied[0].version != 1 || applied[0].sha256 != first.sha256 {
			return errPreRelease
		}
		return nil
	}
	var tasks bool
	err := tx.QueryRow(ctx, `SELECT to_regclass('tasks') IS NOT NULL`, pgx.QueryExecModeSimpleProtocol).Scan(&tasks)
	if err == nil && tasks {
		return errPreRelease
	}
	return err
}

// applyMigrations records and runs, inside tx, each migration the database has not recorded.
func applyMigrations(ctx context.Context, tx pgx.Tx, migrations []migration, log *slog.Logger) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7031945862)`); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		sha256     bytea       NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return err
	}
	// The simple protocol throughout: no named statement is left on a server
	// connection that a transaction-mode pooler would hand to another replica.
	rows, _ := tx.Query(ctx, `SELECT version, sha256 FROM schema_migrations ORDER BY version`, pgx.QueryExecModeSimpleProtocol)
	applied, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (migration, error) {
		var m migration
		var sum []byte
		err := row.Scan(&m.version, &sum)
		copy(m.sha256[:], sum)
		return m, err
	})
	if err != nil {
		return err
	}
	if err := checkRelease(ctx, tx, applied, migrations[0]); err != nil {
		return err
	}
	done := map[int]bool{}
	for _, a := range applied {
		done[a.version] = true
		switch {
		case a.version > len(migrations):
			log.Warn("the database has a migration this binary does not know; serving anyway", "version", a.version)
		case a.sha256 != migrations[a.version-1].sha256:
			log.Warn("a migration was edited after it was applied; edits never reach a database, add a new migration instead", "version", a.version)
		}
	}
	for _, m := range migrations {
		if done[m.version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
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

// Command postgres runs a throwaway PostgreSQL server (test/postgres) for
// the schemathesis run against caravan-central on PostgreSQL: it prints the
// URL of an empty database on stdout, then serves until SIGTERM or SIGINT,
// when it stops the server and removes its files.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/caravan-gitops/caravan/test/postgres"
)

func main() {
	srv, err := postgres.Launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, "postgres:", err)
		os.Exit(1)
	}
	defer srv.Stop()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := createDatabase(ctx, srv.URL("postgres"), "schemathesis"); err != nil {
		fmt.Fprintln(os.Stderr, "postgres:", err)
		srv.Stop()
		os.Exit(1)
	}
	fmt.Println(srv.URL("schemathesis"))
	<-ctx.Done()
}

func createDatabase(ctx context.Context, adminURL, name string) error {
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	return nil
}

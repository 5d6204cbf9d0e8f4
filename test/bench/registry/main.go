//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	dir, _ := os.MkdirTemp("", "seedtime-")
	defer os.RemoveAll(dir)
	t := time.Now()
	a, err := seedFleet(context.Background(), "sqlite://"+filepath.Join(dir, "r.db"), 2000)
	fmt.Println(len(a), err, time.Since(t))
}

//go:build linux && rollerproc

package main

import (
	"fmt"
	"os"
)

// The roller's process: the bench builds itself with the rollerproc tag,
// leaving out the world it sets up, so that the process holds what the
// agent's roller holds and little more, and runs it with a spec file.
func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: roller SPEC.json")
		os.Exit(2)
	}
	if err := rollerProcess(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "roller:", err)
		os.Exit(1)
	}
}

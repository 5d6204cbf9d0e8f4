// Command caravan is the command line of a Caravan fleet registry.
package main

import (
	"os"

	"github.com/caravan-gitops/caravan/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Command caravan-central is the Caravan registry.
package main

import (
	"fmt"
	"os"

	"github.com/caravan-gitops/caravan/central"
)

func main() {
	if err := central.Command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "caravan-central:", err)
		os.Exit(1)
	}
}

// Command caravan-agent is the in-cluster Caravan agent.
package main

import (
	"fmt"
	"os"

	"github.com/caravan-gitops/caravan/agent"
)

func main() {
	if err := agent.Command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "caravan-agent:", err)
		os.Exit(1)
	}
}

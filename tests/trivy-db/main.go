// Command trivy-db writes a Trivy vulnerability database (the files `trivy --cache-dir DIR`
// reads: DIR/db/trivy.db and DIR/db/metadata.json) holding the advisories it is given as JSON on
// stdin, with trivy-db's own packages, as Trivy's database is built. The end-to-end tests make
// the databases of their vulnerability gate with it: no feed is reachable from these machines.
//
//	{"updatedAt": "2026-12-05T00:00:00Z",
//	 "advisories": [
//	   {"id": "RUSTSEC-2099-0001", "source": "cargo::Shipshape fixture", "package": "axum",
//	    "vulnerableVersions": ["<99.0.0"], "severity": "CRITICAL"},
//	   {"id": "CVE-2099-0002", "source": "debian 12", "package": "glibc",
//	    "fixedVersion": "2.36-9+deb12u99", "severity": "HIGH"}]}
//
// An advisory without a severity gets no vulnerability record: Trivy reports it UNKNOWN.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	"github.com/aquasecurity/trivy-db/pkg/types"
	bolt "go.etcd.io/bbolt"
)

type advisory struct {
	ID                 string   `json:"id"`
	Source             string   `json:"source"`
	Package            string   `json:"package"`
	VulnerableVersions []string `json:"vulnerableVersions"`
	FixedVersion       string   `json:"fixedVersion"`
	Severity           string   `json:"severity"`
}

type input struct {
	UpdatedAt  time.Time  `json:"updatedAt"`
	Advisories []advisory `json:"advisories"`
}

// The data source every advisory here is said to come from.
const sourceID = types.SourceID("shipshape-fixture")

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: trivy-db CACHE_DIR < advisories.json")
		os.Exit(2)
	}
	if err := write(filepath.Join(os.Args[1], "db")); err != nil {
		fmt.Fprintln(os.Stderr, "trivy-db:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		return fmt.Errorf("reading the advisories: %w", err)
	}
	_ = os.Remove(db.Path(dir))
	if err := db.Init(dir); err != nil {
		return err
	}
	defer db.Close()
	dbc := db.Config{}
	err := dbc.BatchUpdate(func(tx *bolt.Tx) error {
		for _, a := range in.Advisories {
			source := types.DataSource{ID: sourceID, Name: "shipshape's end-to-end fixture", URL: "https://example.invalid/shipshape"}
			if err := dbc.PutDataSource(tx, a.Source, source); err != nil {
				return err
			}
			detail := types.Advisory{VulnerableVersions: a.VulnerableVersions, FixedVersion: a.FixedVersion}
			if err := dbc.PutAdvisoryDetail(tx, a.ID, a.Package, []string{a.Source}, detail); err != nil {
				return err
			}
			if err := dbc.SaveAdvisoryDetails(tx, a.ID); err != nil {
				return err
			}
			if a.Severity == "" {
				continue
			}
			severity, err := types.NewSeverity(a.Severity)
			if err != nil {
				return err
			}
			vulnerability := types.Vulnerability{
				Title:          a.ID + " (shipshape's fixture)",
				VendorSeverity: types.VendorSeverity{sourceID: severity},
			}
			if err := dbc.PutVulnerability(tx, a.ID, vulnerability); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	meta := metadata.Metadata{Version: db.SchemaVersion, UpdatedAt: in.UpdatedAt, NextUpdate: in.UpdatedAt.Add(24 * time.Hour)}
	return metadata.NewClient(dir).Update(meta)
}

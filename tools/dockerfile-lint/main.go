// Command dockerfile-lint runs Docker's own Dockerfile checks over a Dockerfile: the rules that
// `docker build --check` applies (StageNameCasing, FromAsCasing, JSONArgsRecommended, UndefinedVar,
// SecretsUsedInArgOrEnv, ...), taken from github.com/moby/buildkit at the version go.mod pins.
//
// It needs no Docker engine and no registry, which our machines have neither of: base images are
// not looked up, so the one check that needs a base image's real config (InvalidBaseImagePlatform)
// sees a stand-in, and CopyIgnoredFile, which needs the build context, is not run
// (hack/image checks the context itself).
//
// Rules are chosen as Docker chooses them: the stable ones, and whatever a `# check=` directive in
// the Dockerfile asks for (skip=..., experimental=...).
//
// Usage: dockerfile-lint Dockerfile...
// Exit status: 0 when every file is clean, 1 when any has a warning or does not parse, 2 on misuse.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// offlineResolver answers for every base image with a minimal linux/amd64 config instead of
// asking a registry. One layer, so the stage is not taken for scratch; PATH set, as every real
// base image sets it, so UndefinedVar does not flag $PATH.
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	img := ocispecs.Image{
		Platform: ocispecs.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispecs.ImageConfig{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		RootFS:   ocispecs.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString(ref)}},
	}
	dt, err := json.Marshal(img)
	return ref, "", dt, err
}

// lint checks one Dockerfile and says whether it is clean.
func lint(path string) (bool, error) {
	dt, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	platform := ocispecs.Platform{OS: "linux", Architecture: "amd64"}
	sourceMap := llb.NewSourceMap(nil, path, "Dockerfile", dt)
	// The frontend gives the source map the definition of the context it read the file from;
	// the results only carry it along, and an empty one is what a local file has.
	sourceMap.Definition = &llb.Definition{}
	opt := dockerfile2llb.ConvertOpt{
		Config:         dockerui.Config{},
		SourceMap:      sourceMap,
		TargetPlatform: &platform,
		MetaResolver:   offlineResolver{},
	}
	results, err := dockerfile2llb.DockerfileLint(context.Background(), dt, opt)
	if err != nil {
		return false, err
	}
	if err := results.PrintTo(os.Stdout, nil); err != nil {
		return false, err
	}
	if results.Error != nil {
		fmt.Fprintf(os.Stdout, "\nERROR: %s does not build: ", path)
		results.PrintErrorTo(os.Stdout, nil)
		return false, nil
	}
	return len(results.Warnings) == 0, nil
}

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-lint Dockerfile...")
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	clean := true
	for _, path := range flag.Args() {
		ok, err := lint(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dockerfile-lint: %s: %v\n", path, err)
			os.Exit(2)
		}
		if ok {
			fmt.Printf("dockerfile-lint: %s: no warnings\n", path)
		} else {
			clean = false
		}
	}
	if !clean {
		os.Exit(1)
	}
}

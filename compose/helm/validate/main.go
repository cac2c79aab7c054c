// Command k8s-validate checks Kubernetes manifests against the OpenAPI
// schemas of a Kubernetes release, offline: the swagger.json of the
// k8s.io/kubernetes module (api/openapi-spec/swagger.json). Every object
// is validated against the definition whose x-kubernetes-group-version-kind
// names its apiVersion and kind, strictly: a field the schema does not
// have is an error (as kubeconform -strict does), and so is a kind the
// release does not know.
//
//	helm template ... | k8s-validate -swagger swagger.json [-json out.json]
//
// Exit status 1 names each object and field that fails; -json writes the
// objects as a JSON array (for tests that assert on them).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"
)

type gvk struct{ Group, Version, Kind string }

func main() {
	swaggerPath := flag.String("swagger", "", "swagger.json of the Kubernetes release")
	jsonOut := flag.String("json", "", "write the objects as a JSON array here")
	flag.Parse()
	if *swaggerPath == "" {
		fmt.Fprintln(os.Stderr, "k8s-validate: -swagger is required")
		os.Exit(2)
	}
	raw, err := os.ReadFile(*swaggerPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "k8s-validate: %v\n", err)
		os.Exit(2)
	}
	var doc spec.Swagger
	if err := json.Unmarshal(raw, &doc); err != nil {
		fmt.Fprintf(os.Stderr, "k8s-validate: %s: %v\n", *swaggerPath, err)
		os.Exit(2)
	}
	byGVK := map[gvk]string{}
	for name, def := range doc.Definitions {
		if ext, ok := def.Extensions["x-kubernetes-group-version-kind"]; ok {
			b, _ := json.Marshal(ext)
			var list []gvk
			if json.Unmarshal(b, &list) == nil {
				for _, g := range list {
					byGVK[g] = name
				}
			}
		}
	}
	strict(&doc)
	loosen(&doc)
	validators := map[string]*validate.SchemaValidator{}

	input, err := io.ReadAll(bufio.NewReader(os.Stdin))
	if err != nil {
		fmt.Fprintf(os.Stderr, "k8s-validate: reading stdin: %v\n", err)
		os.Exit(2)
	}
	var objects []map[string]interface{}
	failed := 0
	for i, part := range splitDocs(input) {
		var obj map[string]interface{}
		if err := yaml.Unmarshal(part, &obj); err != nil {
			fmt.Printf("document %d: not YAML: %v\n", i+1, err)
			failed++
			continue
		}
		if len(obj) == 0 {
			continue
		}
		objects = append(objects, obj)
		apiVersion, _ := obj["apiVersion"].(string)
		kind, _ := obj["kind"].(string)
		meta, _ := obj["metadata"].(map[string]interface{})
		name, _ := meta["name"].(string)
		what := fmt.Sprintf("%s %s (document %d)", kind, name, i+1)
		group, version := "", apiVersion
		if j := strings.LastIndex(apiVersion, "/"); j >= 0 {
			group, version = apiVersion[:j], apiVersion[j+1:]
		}
		def, ok := byGVK[gvk{group, version, kind}]
		if !ok {
			fmt.Printf("%s: %s %s is not in this Kubernetes release\n", what, apiVersion, kind)
			failed++
			continue
		}
		v, ok := validators[def]
		if !ok {
			ref := spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef("#/definitions/" + def)}}
			v = validate.NewSchemaValidator(resolve(&ref, doc.Definitions, map[string]bool{}), nil, "", strfmt.Default)
			validators[def] = v
		}
		res := v.Validate(obj)
		if res != nil && !res.IsValid() {
			failed++
			for _, e := range res.Errors {
				fmt.Printf("%s: %v\n", what, e)
			}
		}
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(objects, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "k8s-validate: %v\n", err)
			os.Exit(2)
		}
	}
	if failed > 0 {
		fmt.Printf("k8s-validate: %d of %d objects fail\n", failed, len(objects))
		os.Exit(1)
	}
	fmt.Printf("k8s-validate: %d objects valid\n", len(objects))
}

// strict forbids properties a definition does not declare, unless it
// preserves unknown fields or is a map (additionalProperties given).
func strict(doc *spec.Swagger) {
	for name, def := range doc.Definitions {
		if len(def.Properties) == 0 || def.AdditionalProperties != nil {
			continue
		}
		if _, ok := def.Extensions["x-kubernetes-preserve-unknown-fields"]; ok {
			continue
		}
		def.AdditionalProperties = &spec.SchemaOrBool{Allows: false}
		doc.Definitions[name] = def
	}
}

// loosen gives the two types the API server accepts in two forms their
// schema's single type: resource quantities and int-or-string (a number
// or a string, e.g. `cpu: 2`, `port: http`).
func loosen(doc *spec.Swagger) {
	for name, def := range doc.Definitions {
		if name == "io.k8s.apimachinery.pkg.api.resource.Quantity" ||
			name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString" ||
			def.Format == "int-or-string" {
			def.Type = nil
			def.Format = ""
			doc.Definitions[name] = def
		}
	}
}

// resolve inlines every $ref (kube-openapi's validator takes none). A
// definition met again below itself (recursive types) accepts anything
// there.
func resolve(s *spec.Schema, defs spec.Definitions, stack map[string]bool) *spec.Schema {
	if s == nil {
		return nil
	}
	if ref := s.Ref.String(); ref != "" {
		name := strings.TrimPrefix(ref, "#/definitions/")
		def, ok := defs[name]
		if !ok || stack[name] {
			return &spec.Schema{}
		}
		stack[name] = true
		out := resolve(&def, defs, stack)
		delete(stack, name)
		if s.Description != "" {
			out.Description = s.Description
		}
		return out
	}
	c := *s
	if len(s.Properties) > 0 {
		c.Properties = make(map[string]spec.Schema, len(s.Properties))
		for k, p := range s.Properties {
			p := p
			c.Properties[k] = *resolve(&p, defs, stack)
		}
	}
	if s.Items != nil {
		items := *s.Items
		items.Schema = resolve(s.Items.Schema, defs, stack)
		if len(s.Items.Schemas) > 0 {
			items.Schemas = make([]spec.Schema, len(s.Items.Schemas))
			for i := range s.Items.Schemas {
				items.Schemas[i] = *resolve(&s.Items.Schemas[i], defs, stack)
			}
		}
		c.Items = &items
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		ap := *s.AdditionalProperties
		ap.Schema = resolve(s.AdditionalProperties.Schema, defs, stack)
		c.AdditionalProperties = &ap
	}
	for _, list := range []*[]spec.Schema{&c.AllOf, &c.AnyOf, &c.OneOf} {
		if len(*list) > 0 {
			out := make([]spec.Schema, len(*list))
			for i := range *list {
				out[i] = *resolve(&(*list)[i], defs, stack)
			}
			*list = out
		}
	}
	c.Not = resolve(s.Not, defs, stack)
	return &c
}

// splitDocs splits a YAML stream at its "---" lines.
func splitDocs(in []byte) [][]byte {
	var out [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(in, []byte("\n")) {
		if bytes.Equal(bytes.TrimRight(line, "\r\n"), []byte("---")) {
			out = append(out, append([]byte(nil), cur.Bytes()...))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	out = append(out, cur.Bytes())
	return out
}

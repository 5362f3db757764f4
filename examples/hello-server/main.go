// The classic example's server: GET /hello answers {"message":"hello","status":"ok"}.
// Built static on the host (CGO_ENABLED=0), then copied into the image by the Dockerfile.
package main

import (
	"encoding/json"
	"log"
	"net/http"
)

func main() {
	http.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"message": "hello", "status": "ok"})
	})
	log.Fatal(http.ListenAndServe(":80", nil))
}

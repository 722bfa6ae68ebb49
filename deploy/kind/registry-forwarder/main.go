// registry-forwarder: listens on one address and relays every TCP connection to another.
//
// kind's local-registry convention names the registry `localhost:5001`: the nodes' containerd
// maps that name to the registry container, so pods run images called localhost:5001/...
// Inside a pod, localhost is the pod itself. The admission controller (sigstore
// policy-controller) fetches an image's signatures by the image's own name, so it runs this
// beside it (a sidecar sharing its network): localhost:5001 in its pod then reaches the
// registry too. A cluster whose registry has a real DNS name needs no forwarder.
//
// Usage: registry-forwarder LISTEN TARGET, e.g. registry-forwarder 127.0.0.1:5001 shipshape-registry:5000
package main

import (
	"io"
	"log"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatalf("usage: %s LISTEN TARGET (e.g. 127.0.0.1:5001 shipshape-registry:5000)", os.Args[0])
	}
	listen, target := os.Args[1], os.Args[2]
	listener, err := net.Listen("tcp", listen)
	if err != nil {
		log.Fatalf("listening on %s: %v", listen, err)
	}
	log.Printf("relaying %s to %s", listen, target)
	for {
		client, err := listener.Accept()
		if err != nil {
			log.Printf("accepting: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go relay(client, target)
	}
}

// relay copies both ways until either side closes; a target that does not answer is logged
// (the caller sees its connection closed, as if the registry were down).
func relay(client net.Conn, target string) {
	defer client.Close()
	upstream, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		log.Printf("reaching %s: %v", target, err)
		return
	}
	defer upstream.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(upstream, client); upstream.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(client, upstream); client.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

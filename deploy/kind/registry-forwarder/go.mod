module shipshape.local/registry-forwarder

go 1.22

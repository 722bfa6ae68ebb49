# The model-server image, built with no registry: no base image is pulled.
#
# The build context is assembled on the host (by `cargo xtask image build`, issue 3):
#   rootfs/usr/local/bin/model-server   the release binary
#   rootfs/lib*/...                     the shared libraries `ldd` lists for it (glibc, libgcc_s)
#   rootfs/models/model.json            the model served by default (server/models/iris-v1.json)
#   rootfs/etc/passwd, rootfs/etc/group the non-root user 65532 the chart runs as
#   rootfs/var/lib/dpkg/status.d/<pkg>  the Debian packages those libraries come from (as
#   rootfs/etc/os-release               distroless records them), and which Debian release:
#                                       scanners list and match the libraries by them
# so the image is the binary, its libraries and its model: nothing else to patch or scan.
FROM scratch
COPY rootfs/ /
USER 65532:65532
EXPOSE 8000 9090
ENTRYPOINT ["/usr/local/bin/model-server"]
CMD ["serve"]

# Sourced by the container guest scripts: image_tar TAR writes a root
# filesystem tarball for a container image made of the guest's own binaries
# (no registry): dash as sh, the coreutils the tests use, getfattr/setfattr,
# and the libraries ldd names for them.
image_tar() {
    local d=/tmp/img p b lib dir
    mkdir -p $d/usr/bin $d/tmp $d/data
    for l in bin lib lib64 sbin; do ln -s usr/$l $d/$l; done
    for b in dash ls cat mkdir chmod stat sync touch rm mv ln head sha256sum readlink sleep \
             setfattr getfattr; do
        p=$(command -v $b) || { echo "no $b in the guest"; return 1; }
        cp -L "$p" $d/usr/bin/
        for lib in $(ldd "$p" | grep -o '/[^ ]*'); do
            dir=$(realpath "$(dirname "$lib")")
            mkdir -p "$d$dir"
            cp -L "$lib" "$d$dir/"
        done
    done
    ln -s dash $d/usr/bin/sh
    tar -C $d -cf "$1" .
}

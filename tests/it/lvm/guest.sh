# The guest side of lvm::guest_suite: prepares the guest, then runs the test binary $1 with
# the ignored tests of lvm::guest (in the current folder, the share).
set -e
# --lvm-dirmount defaults to /var/lib/freezer, and the guest's / is read-only: /var/lib
# becomes a tmpfs with the host's folders bound back in (dpkg's among them).
mkdir /tmp/host-var-lib
mount --bind /var/lib /tmp/host-var-lib
mount -t tmpfs freezer-var-lib /var/lib
for d in /tmp/host-var-lib/*; do
    n=/var/lib/${d##*/}
    if [[ -L $d ]]; then
        ln -s "$(readlink "$d")" "$n"
    elif [[ -d $d ]]; then
        mkdir "$n" && mount --bind "$d" "$n"
    else
        touch "$n" && mount --bind "$d" "$n"
    fi
done
# The MySQL test's servers listen on 127.0.0.1.
ip link set lo up
export RUST_BACKTRACE=1 TMPDIR=/tmp
exec "$1" --ignored --test-threads=1 --show-output lvm::guest::

SUMMARY = "Trusted time for devices before they open TLS"
DESCRIPTION = "trusttime sets the clock from NTP, NTS and Roughtime servers, trusts a time \
only when independent sources agree, and holds the device's TLS clients back until then \
(trusttime-wait.service orders time-sync.target)."
HOMEPAGE = "https://example.invalid/trusttime"
SECTION = "net"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=9;endline=9;md5=86b31c7756a1a7962f28b62856ed4f05"

# The release tag v${PV}; point SRC_URI at your copy of the repository (or set SRCREV to the
# tag's commit for builds without network access at parse time).
SRC_URI = "git://example.invalid/trusttime.git;protocol=https;nobranch=1;tag=v${PV}"
S = "${WORKDIR}/git"

# The cargo class builds offline from the crates listed in trusttime-crates.inc (every
# registry crate of Cargo.lock; regenerate with `scripts/check-recipes --update` or
# `bitbake -c update_crates trusttime`).
inherit cargo cargo-update-recipe-crates systemd features_check
require ${BPN}-crates.inc

REQUIRED_DISTRO_FEATURES = "systemd"

# The device build (no optional features): sync, the daemon, NTP and Roughtime, no TLS stack.
# PACKAGECONFIG "tls" adds NTS, HTTPS Date and `trusttime check` (rustls with ring, whose C
# code the target's compiler builds).
PACKAGECONFIG ??= ""
PACKAGECONFIG[tls] = ""
CARGO_BUILD_FLAGS:append = " -p trusttime --no-default-features \
    ${@bb.utils.contains('PACKAGECONFIG', 'tls', '--features tls', '', d)}"

do_install:append() {
    install -d ${D}${sysconfdir}/trusttime
    install -m 0644 ${S}/dist/trusttime.toml ${D}${sysconfdir}/trusttime/trusttime.toml
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/dist/trusttime.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/dist/trusttime-wait.service ${D}${systemd_system_unitdir}/
    sed -i -e 's,/usr/bin/trusttime,${bindir}/trusttime,g' \
        ${D}${systemd_system_unitdir}/trusttime.service \
        ${D}${systemd_system_unitdir}/trusttime-wait.service
}

SYSTEMD_SERVICE:${PN} = "trusttime.service trusttime-wait.service"
SYSTEMD_AUTO_ENABLE = "enable"
CONFFILES:${PN} = "${sysconfdir}/trusttime/trusttime.toml"

# One time daemon per image. systemd-timesyncd is a PACKAGECONFIG of systemd:
# PACKAGECONFIG:remove:pn-systemd = "timesyncd".
RCONFLICTS:${PN} = "chrony ntp ntpsec openntpd"

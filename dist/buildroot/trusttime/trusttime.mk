################################################################################
#
# trusttime
#
################################################################################

TRUSTTIME_VERSION = 0.1.0
TRUSTTIME_SITE = https://example.invalid/trusttime.git
TRUSTTIME_SITE_METHOD = git
TRUSTTIME_LICENSE = Apache-2.0 or MIT
# The package is the crate crates/trusttime of the workspace (Cargo.lock at the top).
TRUSTTIME_SUBDIR = crates/trusttime

TRUSTTIME_CARGO_BUILD_OPTS = --no-default-features
TRUSTTIME_CARGO_INSTALL_OPTS = --no-default-features
ifeq ($(BR2_PACKAGE_TRUSTTIME_TLS),y)
TRUSTTIME_CARGO_BUILD_OPTS += --features tls
TRUSTTIME_CARGO_INSTALL_OPTS += --features tls
endif

define TRUSTTIME_INSTALL_CONFIG
	$(INSTALL) -D -m 0644 $(@D)/dist/trusttime.toml \
		$(TARGET_DIR)/etc/trusttime/trusttime.toml
endef
TRUSTTIME_POST_INSTALL_TARGET_HOOKS += TRUSTTIME_INSTALL_CONFIG

define TRUSTTIME_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(@D)/dist/trusttime.service \
		$(TARGET_DIR)/usr/lib/systemd/system/trusttime.service
	$(INSTALL) -D -m 0644 $(@D)/dist/trusttime-wait.service \
		$(TARGET_DIR)/usr/lib/systemd/system/trusttime-wait.service
endef

$(eval $(cargo-package))

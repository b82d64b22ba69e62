# Configuration (config/): the one model (struct vm_config), command-line flags, the JSON
# sections of the API and config files, and validation; with their unit tests and fuzzers.
CONFIG_ARGS_OBJS := config/config.o config/args.o config/specs.o
CONFIG_JSON_OBJS := config/jfield.o config/sections.o config/json.o
VMM_OBJS += $(CONFIG_ARGS_OBJS) $(CONFIG_JSON_OBJS)

$(eval $(call unit_test,test_config,$(CONFIG_ARGS_OBJS),))
$(eval $(call unit_test,test_config_json,$(CONFIG_JSON_OBJS) vmm/log.o,-ljson-c))
$(eval $(call fuzz_target,fuzz_config_args,$(CONFIG_ARGS_OBJS:.o=.c),))
$(eval $(call fuzz_target,fuzz_config_json,$(CONFIG_JSON_OBJS:.o=.c) vmm/log.c,-ljson-c))

# README.md's flag table against config_usage(), the text of `amber --help`.
$(eval $(call unit_test,test_readme_flags,$(CONFIG_ARGS_OBJS),))

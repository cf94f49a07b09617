# gen-help.cmake: turns cli/help/*.txt into kw-help-gen.h, one
# `static const char kw_help_NAME[]` per file, so that `--help` prints the
# very text the man pages are made from (tools/kwire-man.py). Run as
#   cmake -DOUT=kw-help-gen.h -DFILES="a.txt;b.txt" -P gen-help.cmake
# The bytes go in as a hex array: no quoting rules to get wrong.
set(text "/* Generated from the files in cli/help by cli/help/gen-help.cmake. Do not edit. */\n")
string(APPEND text "#ifndef KW_HELP_GEN_H\n#define KW_HELP_GEN_H\n")
foreach(f ${FILES})
  get_filename_component(name ${f} NAME_WE)
  string(REPLACE "-" "_" name "${name}")
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(REGEX REPLACE "((0x..,){16})" "\\1\n\t" hex "${hex}")
  string(APPEND text "static const char kw_help_${name}[] = {\n\t${hex}0};\n")
endforeach()
string(APPEND text "#endif\n")
file(WRITE ${OUT}.tmp "${text}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)

#!/usr/bin/env python3
"""kwire-man.py: makes a man page from the --help texts in cli/help.

    kwire-man.py OUT.roff PAGE SECTION EXTRA HELP.txt [HELP.txt ...]

The --help texts are the single source: `kwire CMD --help` prints them
verbatim (compiled in through tools/embed-text.cmake) and this script turns
the same files into roff. EXTRA is an optional file (or '-') of man-only
sections (FILES, EXAMPLES, SEE ALSO) in the same plain-text style; it must
not introduce flags (tests/integration/test_man.py checks both ways).

The help text layout it reads (docs/packaging.md):
  - the first block is the usage: 'usage: kwire ...' plus indented lines;
  - a line ending in ':' at column 0 heads the block below it;
  - a block of lines at indent 2 (or 6 for a long option without a short
    one) with a gap of 2+ spaces is a definition list: tag, then text;
    lines indented to the text column continue the entry;
  - a block indented 4 is literal (an example);
  - anything else is a paragraph.
Lists whose tags start with '-' go to OPTIONS, the rest stay in place.
"""
import os
import re
import sys

VERSION = os.environ.get("KWIRE_VERSION", "")


def esc(s):
    """roff-escapes running text: backslashes, and the dashes of options
    (which must stay ASCII hyphen-minus so that they can be searched)."""
    s = s.replace("\\", "\\e")
    s = re.sub(r"(?<![\w.])(--?)([A-Za-z][\w-]*)",
               lambda m: "\\%" + m.group(1).replace("-", "\\-") + m.group(2).replace("-", "\\-"), s)
    return s


def line_out(s):
    s = esc(s)
    if s.startswith(".") or s.startswith("'"):
        s = "\\&" + s
    return s


def tag_out(tag):
    """'-f, --format FMT' -> bold flags, italic arguments."""
    parts = []
    for tok in re.split(r"(\s+|,\s*)", tag):
        if not tok:
            continue
        if tok.isspace() or tok.startswith(","):
            parts.append(tok)
        elif tok.startswith("-"):
            parts.append("\\fB" + esc(tok) + "\\fR")
        else:
            parts.append("\\fI" + esc(tok) + "\\fR")
    return "".join(parts)


ENTRY = re.compile(r"^( {2}| {6})(\S.*?)(?: {2,}(\S.*))?$")


def blocks(lines):
    cur = []
    for l in lines:
        if l.strip():
            cur.append(l.rstrip())
        elif cur:
            yield cur
            cur = []
    if cur:
        yield cur


def parse_list(blk):
    """A definition list: [(tag, [text lines])]."""
    items = []
    col = None
    for l in blk:
        ind = len(l) - len(l.lstrip())
        if items and col is not None and ind >= col:
            items[-1][1].append(l.strip())
            continue
        m = ENTRY.match(l)
        if not m:
            return None
        tag, text = m.group(2), m.group(3)
        col = l.index(text) if text else ind + 4
        items.append((tag.rstrip(), [text] if text else []))
    return items


def completion():
    """--completion OUT TEMPLATE HELPDIR: the bash completion, its option
    lists taken from the same help texts."""
    out, tmpl, hd = sys.argv[2:5]
    cmds = []
    with open(os.path.join(hd, "kwire.txt"), encoding="utf-8") as fh:
        for l in fh:
            m = re.match(r"^  ([a-z]+)\s{2,}\S", l)
            if m:
                cmds.append(m.group(1))
    files = {"decode": ["decode.txt", "analyze.txt"], "sniff": ["sniff.txt", "analyze.txt"]}
    cases = []
    for c in cmds:
        text = ""
        for f in files.get(c, [c + ".txt"]):
            with open(os.path.join(hd, f), encoding="utf-8") as fh:
                text += fh.read()
        found = re.findall(r"^ {2,6}(?:(-\w), )?(--[a-z][a-z0-9-]*)", text, re.M)
        opts = sorted({o for pair in found for o in pair if o})
        cases.append('\t%s) opts="%s" ;;' % (c, " ".join(opts)))
    with open(tmpl, encoding="utf-8") as fh:
        t = fh.read()
    t = t.replace("@COMMANDS@", " ".join(cmds)).replace("@CASES@", "\n".join(cases))
    with open(out + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(t)
    os.replace(out + ".tmp", out)


def main():
    if sys.argv[1] == "--completion":
        return completion()
    out, page, section, extra = sys.argv[1:5]
    lines = []
    for f in sys.argv[5:]:
        with open(f, encoding="utf-8") as fh:
            lines += fh.read().split("\n")
    bl = list(blocks(lines))
    usage = bl.pop(0)
    synopsis = []
    for l in usage:
        l = l.strip()
        if l.startswith("usage: "):
            l = l[len("usage: "):]
        synopsis.append(l)

    desc, opts = [], []
    for blk in bl:
        head = None
        if blk[0].endswith(":") and not blk[0].startswith(" "):
            head, blk = blk[0][:-1], blk[1:]
            if not blk:  # a heading alone: the block below is its body
                desc.append(("head", head))
                continue
        items = parse_list(blk)
        if items and all(t.startswith("-") for t, _ in items):
            opts.append((head, items))
        elif items:
            desc.append(("list", head, items))
        elif all(l.startswith("    ") for l in blk):
            if head:
                desc.append(("head", head))
            desc.append(("literal", blk))
        else:
            if head:
                desc.append(("head", head))
            desc.append(("para", blk))

    name, summary = page, ""
    with open(os.path.join(os.path.dirname(sys.argv[5]), "kwire.txt"), encoding="utf-8") as fh:
        for l in fh:
            m = re.match(r"^  (\S+)\s{2,}(.*)$", l)
            if m and page == "kwire-" + m.group(1):
                summary = m.group(2)
    if page == "kwire":
        summary = "a Kafka-compatible proxy and protocol analyzer"
    elif page == "kwire.yaml":
        summary = "configuration file of the kwire proxy"

    o = []
    o.append('.TH "%s" "%s" "" "kwire %s" "kwire manual"' % (page.upper(), section, VERSION))
    o.append(".nh")  # no hyphenation: options and paths stay whole
    o.append(".SH NAME")
    o.append("%s \\- %s" % (esc(page), esc(summary)))
    o.append(".SH SYNOPSIS")
    for i, s in enumerate(synopsis):
        if i:
            o.append(".br")
        o.append(line_out(s))
    o.append(".SH DESCRIPTION")
    for d in desc:
        if d[0] == "head":
            o.append(".SS " + esc(d[1][:1].upper() + d[1][1:]))
        elif d[0] == "para":
            o.append(".PP")
            o += [line_out(l.strip()) for l in d[1]]
        elif d[0] == "literal":
            o.append(".PP\n.nf\n.RS 4")
            o += [line_out(l[4:]) for l in d[1]]
            o.append(".RE\n.fi")
        else:
            if d[1]:
                o.append(".SS " + esc(d[1][:1].upper() + d[1][1:]))
            for tag, text in d[2]:
                o.append(".TP\n" + tag_out(tag))
                o += [line_out(t) for t in text]
    if opts:
        o.append(".SH OPTIONS")
        for head, items in opts:
            for tag, text in items:
                o.append(".TP\n" + tag_out(tag))
                o += [line_out(t) for t in text]
    if extra != "-" and os.path.exists(extra):
        with open(extra, encoding="utf-8") as fh:
            for blk in blocks(fh.read().split("\n")):
                tp = False  # inside a .TP entry: a tag line and its indented text
                for i, l in enumerate(blk):
                    nxt = blk[i + 1] if i + 1 < len(blk) else ""
                    if re.match(r"^[A-Z][A-Z ]+$", l):
                        o.append(".SH " + l)
                        tp = False
                    elif not l.startswith(" ") and nxt.startswith("    "):
                        o.append(".TP\n" + line_out(l))
                        tp = True
                    elif l.startswith("    ") and tp:
                        o.append(line_out(l.strip()))
                    elif l.startswith("    "):
                        if i == 0 or not blk[i - 1].startswith("    "):
                            o.append(".PP\n.nf\n.RS 4")
                        o.append(line_out(l[4:]))
                        if not nxt.startswith("    "):
                            o.append(".RE\n.fi")
                    else:
                        if tp or i == 0 or re.match(r"^[A-Z][A-Z ]+$", blk[i - 1]) or \
                                blk[i - 1].startswith("    "):
                            o.append(".PP")
                        tp = False
                        o.append(line_out(l))
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(o) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()

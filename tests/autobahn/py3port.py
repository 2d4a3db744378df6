#!/usr/bin/env python3
"""Port a pristine Autobahn|Testsuite 25.10.1 install (Python 2 only) to Python 3, in place.

usage: py3port.py SITE_PACKAGES          port it (it must be pristine)
       py3port.py --status SITE_PACKAGES print "ported" (by this port), "pristine" or "stale"
       py3port.py --pins                 print the two requirements it ports

Run it with the interpreter of the venv that holds the packages (install.sh does).
Steps, each of which stops the port with an error rather than leave a silent half-port:

1. lib2to3 (stdlib up to Python 3.12) converts the package: print, imports, has_key, ...
2. ``octets.py`` beside this script is copied in as ``autobahntestsuite/_octets.py``.
3. The EDITS below are applied. Each one names its file, the exact text it replaces and
   how many times that text must occur; any other count is an error. Line endings are
   preserved: many upstream files use CRLF.
4. Everything is byte-compiled and imported, and the case list must have 517 cases.
5. A marker file records the versions and a hash of this script and octets.py, so
   install.sh can tell a current port from a stale one.

Payload model (see octets.py): inside the suite a payload stays a Python 2 octet string,
a ``str`` of code points 0-255; conversion to and from ``bytes`` happens at the boundary
with autobahn only. That leaves the case files as upstream wrote them, apart from the
edits below that Python 3 makes necessary.
"""

import compileall
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELPER = HERE / "octets.py"
VERSIONS = {"autobahntestsuite": "25.10.1", "autobahn": "0.10.9"}
CASE_COUNT = 517  # fuzzingclient cases 1.* - 13.*, as upstream lists them
MARKER = "autobahntestsuite/.wsdaemon-py3port"


class PortError(Exception):
    pass


@dataclass(frozen=True)
class Edit:
    path: str  # relative to site-packages
    old: str
    new: str
    count: int = 1


SUITE = "autobahntestsuite/"
FUZZ = SUITE + "fuzzing.py"
CASE = SUITE + "case/"

FUZZ_IMPORT = (
    "from ._octets import OctetSending as _OctetSending, octets as _octets, latin1 as _latin1, "
    "report_text as _report_text, hexlify as _hexlify, json_default as _json_default\n"
)
CASE_IMPORT = "from .._octets import octets as _octets, hexlify as _hexlify, utf8_view as _utf8_view\n"


def helper_import(case_file):
    """The case file gets the helpers right after its (2to3-converted) Case import."""
    return Edit(CASE + case_file, "from .case import Case\n", "from .case import Case\n" + CASE_IMPORT)


def hexdump(case_file, expr, count=1):
    """``binascii.b2a_hex(expr)`` of an octet string: bytes in, ``str`` out."""
    return Edit(CASE + case_file, f"binascii.b2a_hex({expr})", f"_hexlify({expr})", count)


def utf8_literal(case_file, name, text):
    """A non-ASCII literal in a UTF-8 source was its UTF-8 octets under Python 2."""
    return Edit(
        CASE + case_file,
        f'   {name} = "{text}"\n',
        f'   {name} = "{text}".encode("utf-8").decode("latin-1")\n',
    )


def shown_as_text(case_file, name):
    """A description that prints such a payload shows the text, as Python 2's report did."""
    return Edit(CASE + case_file, f"({name}, _hexlify(", f"(_utf8_view({name}), _hexlify(")


def shown_as_text_mid(case_file, name):
    return Edit(CASE + case_file, f", {name}, _hexlify(", f", _utf8_view({name}), _hexlify(")


HELLO = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!"

EDITS = [
    # ------------------------------------------------------------------ wstest.py
    # The 'serializer' mode imports autobahn's WAMP tests (and unittest2); on Python 3
    # that import fails and would take every mode down with it.
    Edit(
        SUITE + "wstest.py",
        "\nfrom . import serializer\n",
        "\ntry:\n   from . import serializer\nexcept ImportError:\n   serializer = None\n",
    ),
    # -------------------------------------------------------------------- util.py
    # integer division (table formatting; not used by the fuzzing client)
    Edit(SUITE + "util.py", "c1 = l / 2\n", "c1 = l // 2\n"),
    # ----------------------------------------------------------------- fuzzing.py
    Edit(FUZZ, "from autobahn.util import utcnow\n", "from autobahn.util import utcnow\n" + FUZZ_IMPORT),
    # send side: every payload reaches autobahn as bytes (octets.OctetSending)
    Edit(FUZZ, "\nclass FuzzingProtocol:\n", "\nclass FuzzingProtocol(_OctetSending):\n"),
    # receive side: test cases get octet strings, like the ones they expect
    Edit(FUZZ, "self.runCase.onMessage(msg, binary)", "self.runCase.onMessage(_latin1(msg), binary)"),
    Edit(FUZZ, "self.runCase.onPong(payload)", "self.runCase.onPong(_latin1(payload))"),
    Edit(FUZZ, 'log.msg("Pong received: " + payload)', 'log.msg("Pong received: %r" % (payload,))'),
    # wire log renderings: hex and text of octet strings or bytes, as str
    Edit(FUZZ, "dd = binascii.b2a_hex(data[:maxlen]) + ellipses", "dd = _hexlify(data[:maxlen]) + ellipses"),
    Edit(FUZZ, "dd = binascii.b2a_hex(data)\n", "dd = _hexlify(data)\n"),
    Edit(
        FUZZ,
        '   ellipses = " ..."\n   try:\n',
        '   ellipses = " ..."\n   data = _octets(data)\n   try:\n',
    ),
    Edit(FUZZ, "dd = data[:maxlen] + ellipses\n", "dd = data[:maxlen] + ellipses.encode()\n"),
    Edit(FUZZ, "p = ''.join(payload)", "p = b''.join(payload)"),
    Edit(
        FUZZ,
        "binascii.b2a_hex(frameHeader.mask) if frameHeader.mask else None",
        "_hexlify(frameHeader.mask) if frameHeader.mask else None",
        count=2,
    ),
    Edit(FUZZ, "mmask = binascii.b2a_hex(t[6])", "mmask = _hexlify(t[6])"),
    # case results: autobahn keeps the HTTP request/response and close reasons as bytes
    Edit(
        FUZZ,
        "         def cleanBin(e_old):\n",
        "         for _key, _value in list(caseResult.items()):\n"
        "            caseResult[_key] = _report_text(_value)\n"
        "\n"
        "         def cleanBin(e_old):\n",
    ),
    # reports: UTF-8 text files; the HTML writer encoded by hand for Python 2's files
    Edit(
        FUZZ,
        "f = open(os.path.join(outdir, report_filename), 'w')\n",
        "f = open(os.path.join(outdir, report_filename), 'w', encoding='utf-8')\n",
        count=4,
    ),
    Edit(
        FUZZ,
        "separators = (',', ': ')))\n",
        "separators = (',', ': '), default = _json_default))\n",
        count=2,
    ),
    Edit(FUZZ, '% (c[0], case[c[0]], c[1])).encode("utf-8"))', "% (c[0], case[c[0]], c[1])))"),
    Edit(FUZZ, "(2+4+len(prefix))*\" \", ll.encode('utf8')))", '(2+4+len(prefix))*" ", ll))'),
    # an exception while writing reports left the reactor, and so wstest, running forever
    Edit(
        FUZZ,
        "         else:\n            self.createReports()\n            reactor.stop()\n",
        "         else:\n            try:\n               self.createReports()\n"
        "            finally:\n               reactor.stop()\n",
    ),
    Edit(
        FUZZ,
        "      else:\n         self.createReports()\n         reactor.stop()\n",
        "      else:\n         try:\n            self.createReports()\n"
        "         finally:\n            reactor.stop()\n",
    ),
    # ---------------------------------------------------------------------- cases
    # type(name, (object, Case), ...) was fine with Python 2's old-style Case; in
    # Python 3 that base order has no consistent MRO.
    Edit(CASE + "case6_x_x.py", "(object, Case, )", "(Case, )"),
    Edit(CASE + "case7_7_X.py", "(object, Case, )", "(Case, )"),
    Edit(CASE + "case7_9_X.py", "(object, Case, )", "(Case, )"),
    Edit(CASE + "case9_7_X.py", "(object, Case, )", "(Case, )"),
    Edit(CASE + "case12_x_x.py", "(object, Case, )", "(Case, )", count=2),
    # 6.2.1-6.2.3: literal non-ASCII text
    utf8_literal("case6_2_1.py", "PAYLOAD", HELLO),
    utf8_literal("case6_2_2.py", "PAYLOAD1", HELLO[:11]),
    utf8_literal("case6_2_2.py", "PAYLOAD2", HELLO[11:]),
    utf8_literal("case6_2_3.py", "PAYLOAD", HELLO),
    # hex dumps in descriptions and results
    *(helper_import(f) for f in ("case6_2_1.py", "case6_2_2.py", "case6_2_3.py", "case6_2_4.py")),
    hexdump("case6_2_1.py", "PAYLOAD"),
    hexdump("case6_2_2.py", "PAYLOAD1"),
    hexdump("case6_2_2.py", "PAYLOAD2"),
    hexdump("case6_2_3.py", "PAYLOAD"),
    hexdump("case6_2_4.py", "PAYLOAD"),
    shown_as_text("case6_2_1.py", "PAYLOAD"),
    shown_as_text("case6_2_2.py", "PAYLOAD1"),
    shown_as_text_mid("case6_2_2.py", "PAYLOAD2"),
    shown_as_text("case6_2_3.py", "PAYLOAD"),
    shown_as_text("case6_2_4.py", "PAYLOAD"),
    helper_import("case6_3_1.py"),
    hexdump("case6_3_1.py", "PAYLOAD"),
    helper_import("case6_3_2.py"),
    hexdump("case6_3_2.py", "Case6_3_1.PAYLOAD"),
    helper_import("case6_4_1.py"),
    *(hexdump("case6_4_1.py", p) for p in ("PAYLOAD1", "PAYLOAD2", "PAYLOAD3")),
    helper_import("case6_4_2.py"),
    *(hexdump("case6_4_2.py", p) for p in ("Case6_4_1.PAYLOAD[:12]", "Case6_4_1.PAYLOAD[12]")),
    hexdump("case6_4_2.py", "Case6_4_1.PAYLOAD[13:]"),
    helper_import("case6_4_3.py"),
    *(hexdump("case6_4_3.py", f"Case6_4_1.PAYLOAD{n}") for n in (1, 2, 3)),
    helper_import("case6_4_4.py"),
    *(hexdump("case6_4_4.py", p) for p in ("Case6_4_1.PAYLOAD[:12]", "Case6_4_1.PAYLOAD[12]")),
    hexdump("case6_4_4.py", "Case6_4_1.PAYLOAD3[13:]"),
    helper_import("case6_x_x.py"),
    hexdump("case6_x_x.py", "p[1]"),
    # the UTF-8 sequence generator checks octet strings with autobahn's validator
    Edit(CASE + "case6_x_x.py", "res = v.validate(vss[:i])", "res = v.validate(_octets(vss[:i]))"),
    helper_import("case7_5_1.py"),
    hexdump("case7_5_1.py", "self.p.localCloseReason"),
    # 9.9.1 (imported, not in the case list): zope's class advice is gone in Python 3
    Edit(
        CASE + "case9_9_1.py",
        "from zope.interface import implements\n",
        "from zope.interface import implementer\n",
    ),
    Edit(
        CASE + "case9_9_1.py",
        "class FrameProducer:\n\n   implements(interfaces.IPushProducer)\n",
        "@implementer(interfaces.IPushProducer)\nclass FrameProducer:\n",
    ),
    # 10.1.1 counts expected frames with Python 2 integer division
    Edit(
        CASE + "case10_1_1.py",
        "len(self.payload) / self.p.autoFragmentSize",
        "len(self.payload) // self.p.autoFragmentSize",
    ),
    # 12.*/13.* hash and decode the echoed message itself: they need the bytes
    helper_import("case12_x_x.py"),
    Edit(
        CASE + "case12_x_x.py",
        "def onMessage(self, msg, binary):\n",
        "def onMessage(self, msg, binary):\n   msg = _octets(msg)\n",
    ),
    Edit(
        CASE + "case12_x_x.py",
        "binascii.hexlify(received_hash), binascii.hexlify(self._expected_hash)",
        "_hexlify(received_hash), _hexlify(self._expected_hash)",
    ),
    # ------------------------------------------------------------ autobahn 0.10.9
    # sendFrame(payload_len=...) builds range(float) on Python 3: 7.1.6 and 9.* need it
    Edit(
        "autobahn/websocket/protocol.py",
        "range(payload_len / len(payload))",
        "range(payload_len // len(payload))",
    ),
]


def apply(site, edit):
    path = site / edit.path
    raw = path.read_bytes().decode("utf-8")
    crlf = raw.count("\r\n")
    if crlf and crlf != raw.count("\n"):
        raise PortError(f"{edit.path}: mixed line endings, edits would not be exact")
    nl = "\r\n" if crlf else "\n"
    old, new = edit.old.replace("\n", nl), edit.new.replace("\n", nl)
    found = raw.count(old)
    if found != edit.count:
        raise PortError(f"{edit.path}: expected {edit.count} x {edit.old!r}, found {found}")
    path.write_bytes(raw.replace(old, new).encode("utf-8"))


def stamp():
    digest = hashlib.sha256()
    for f in (Path(__file__).resolve(), HELPER):
        digest.update(f.read_bytes())
    return json.dumps({"versions": VERSIONS, "port": digest.hexdigest()}, sort_keys=True) + "\n"


def status(site):
    marker = site / MARKER
    if marker.exists():
        return "ported" if marker.read_text() == stamp() else "stale"
    # 2to3 removes every dict.has_key(): its presence marks unconverted upstream code
    fuzzing = site / FUZZ
    if fuzzing.exists() and ".has_key(" in fuzzing.read_text(encoding="utf-8", errors="replace"):
        return "pristine"
    return "stale"


def check_versions():
    for dist, want in VERSIONS.items():
        got = importlib.metadata.version(dist)
        if got != want:
            raise PortError(f"{dist} {got} is installed; this port is for {want}")


def run_2to3(pkg):
    if importlib.util.find_spec("lib2to3") is None:
        raise PortError("lib2to3 is missing (removed in Python 3.13): use CPython 3.11 or 3.12")
    log = pkg / ".wsdaemon-2to3.log"
    with log.open("w") as out:
        cmd = [sys.executable, "-W", "ignore", "-m", "lib2to3", "--write", "--nobackups", "--no-diffs"]
        rc = subprocess.call([*cmd, str(pkg)], stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise PortError(f"2to3 exited {rc}, see {log}")


def self_check(site):
    if not compileall.compile_dir(str(site / "autobahntestsuite"), quiet=1, force=True):
        raise PortError("byte-compiling the ported package failed")
    if not compileall.compile_file(str(site / "autobahn/websocket/protocol.py"), quiet=1, force=True):
        raise PortError("byte-compiling autobahn/websocket/protocol.py failed")
    probe = (
        "import autobahntestsuite.wstest, autobahntestsuite.fuzzing\n"
        "from autobahntestsuite.case import Cases\n"
        "from autobahntestsuite.caseset import CaseSet\n"
        "ids = [CaseSet('websocket', 'Case', Cases, {}, {}).caseClasstoId(c) for c in Cases]\n"
        "print(len(ids), len(set(ids)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/")
    if out.returncode != 0:
        raise PortError("the ported suite does not import:\n" + out.stderr[-3000:])
    if out.stdout.split() != [str(CASE_COUNT)] * 2:
        raise PortError(f"expected {CASE_COUNT} distinct cases, got (cases, distinct) = {out.stdout!r}")


def port(site):
    state = status(site)
    if state != "pristine":
        raise PortError(f"{site / 'autobahntestsuite'} is {state}; reinstall it first (install.sh does)")
    check_versions()
    pkg = site / "autobahntestsuite"
    (site / MARKER).write_text("port incomplete\n")
    run_2to3(pkg)
    shutil.copyfile(HELPER, pkg / "_octets.py")
    for edit in EDITS:
        apply(site, edit)
    self_check(site)
    (site / MARKER).write_text(stamp())


def main(argv):
    if len(argv) == 2 and argv[0] == "--status":
        print(status(Path(argv[1]).resolve()))
        return 0
    if argv == ["--pins"]:
        print(" ".join(f"{dist}=={version}" for dist, version in VERSIONS.items()))
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 64
    site = Path(argv[0]).resolve()
    try:
        port(site)
    except PortError as e:
        print(f"py3port: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"py3port: ported {site / 'autobahntestsuite'} ({len(EDITS)} edits)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

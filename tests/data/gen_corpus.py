#!/usr/bin/env python3
"""Writes the wire corpus under tests/data/ (see README.md for the formats).

The files are committed; run this again only to change the corpus:
    python3 tests/data/gen_corpus.py
Each case states its wire bytes and, separately, what the parser must make of them.
"""
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
CRLF = b"\r\n"


def esc(data: bytes) -> str:
    out = []
    for b in data:
        if b == 0x5C:
            out.append("\\\\")
        elif b == 0x0D:
            out.append("\\r")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x09:
            out.append("\\t")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


def reset(sub):
    path = os.path.join(ROOT, sub)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def write(path, name, data):
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- HTTP

class Req:
    """One request: wire bytes plus the expected parse."""

    def __init__(self, method, target, version="HTTP/1.1", headers=(), body=b"",
                 framing=None, keep_alive=None, expect_continue=False, wire_body=None,
                 trailers=(), eol=CRLF, prefix=b""):
        self.method, self.target, self.version = method, target, version
        self.headers = list(headers)
        self.body = body
        if framing is None:
            framing = "length %d" % len(body) if body else "none"
        self.framing = framing
        if keep_alive is None:
            conn = [v.lower() for n, v in self.headers if n.lower() == "connection"]
            if version == "HTTP/1.1":
                keep_alive = not any("close" in v for v in conn)
            else:
                keep_alive = any("keep-alive" in v for v in conn)
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.trailers = list(trailers)
        head = prefix + f"{method} {target} {version}".encode() + eol
        for n, v in self.headers:
            head += n.encode() + b": " + (v if isinstance(v, bytes) else v.encode()) + eol
        head += eol
        self.wire = head + (body if wire_body is None else wire_body)

    def expect(self):
        lines = ["request", f"method {self.method}", f"target {self.target}",
                 f"version {self.version}"]
        for n, v in self.headers:
            v = v if isinstance(v, bytes) else v.encode()
            lines.append("header %s: %s" % (n, esc(v.strip(b" \t"))))
        lines.append(f"framing {self.framing}")
        lines.append("keep-alive " + ("yes" if self.keep_alive else "no"))
        lines.append("continue " + ("yes" if self.expect_continue else "no"))
        if self.body:
            lines.append("body " + esc(self.body))
        for n, v in self.trailers:
            lines.append(f"trailer {n}: {esc(v.encode())}")
        lines.append("end")
        return "\n".join(lines) + "\n"


BROWSER = [
    ("Host", "www.example.com"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Connection", "keep-alive"),
    ("Upgrade-Insecure-Requests", "1"),
    ("Sec-Fetch-Dest", "document"),
    ("Sec-Fetch-Mode", "navigate"),
    ("Sec-Fetch-Site", "none"),
    ("Priority", "u=0, i"),
]


def chunked(pieces, ext=b"", trailers=b""):
    out = b""
    for p in pieces:
        out += b"%x" % len(p) + ext + CRLF + p + CRLF
    return out + b"0" + ext + CRLF + trailers + CRLF


def http_valid():
    cases = {}
    cases["get-browser"] = [Req("GET", "/index.html", headers=BROWSER)]
    cases["get-query"] = [Req("GET", "/search?q=rust+uwsgi&page=2", headers=[("Host", "a.test")])]
    cases["post-content-length"] = [Req(
        "POST", "/form", headers=[("Host", "a.test"),
                                  ("Content-Type", "application/x-www-form-urlencoded"),
                                  ("Content-Length", "27")],
        body=b"name=rcontainer&lang=rust!!")]
    cases["post-chunked"] = [Req(
        "POST", "/upload", headers=[("Host", "a.test"), ("Transfer-Encoding", "chunked")],
        body=b"hello, chunked world", framing="chunked",
        wire_body=chunked([b"hello, ", b"chunked ", b"world"]))]
    cases["chunked-extensions-and-trailers"] = [Req(
        "PUT", "/data", headers=[("Host", "a.test"), ("Transfer-Encoding", "chunked"),
                                 ("Trailer", "X-Checksum")],
        body=b"0123456789abcdef", framing="chunked",
        wire_body=b"a;name=value;quoted=\"a b\"\r\n0123456789\r\n6 ; ext\r\nabcdef\r\n"
                  b"0;last\r\nX-Checksum: 42\r\nX-Other: a\tb\r\n\r\n",
        trailers=[("X-Checksum", "42"), ("X-Other", "a\tb")])]
    cases["pipelined-gets"] = [Req("GET", "/first", headers=[("Host", "a.test")]),
                               Req("GET", "/second", headers=[("Host", "a.test")])]
    cases["pipelined-post-then-get"] = [
        Req("POST", "/p", headers=[("Host", "a.test"), ("Content-Length", "4")], body=b"GET "),
        Req("GET", "/after", headers=[("Host", "a.test")])]
    cases["pipelined-chunked-then-get"] = [
        Req("POST", "/c", headers=[("Host", "a.test"), ("Transfer-Encoding", "chunked")],
            body=b"GET / HTTP/1.1\r\n", framing="chunked",
            wire_body=chunked([b"GET / HTTP/1.1\r\n"])),
        Req("GET", "/next", headers=[("Host", "a.test"), ("Connection", "close")])]
    cases["http10-get"] = [Req("GET", "/old", version="HTTP/1.0", headers=[("User-Agent", "curl/1")])]
    cases["http10-keep-alive"] = [Req("GET", "/old", version="HTTP/1.0",
                                      headers=[("Connection", "Keep-Alive")]),
                                  Req("GET", "/again", version="HTTP/1.0")]
    cases["http10-post"] = [Req("POST", "/f", version="HTTP/1.0",
                                headers=[("Content-Length", "3")], body=b"abc")]
    cases["expect-100-continue"] = [Req(
        "PUT", "/big", headers=[("Host", "a.test"), ("Content-Length", "11"),
                                ("Expect", "100-continue")],
        body=b"hello world", expect_continue=True)]
    cases["head"] = [Req("HEAD", "/resource", headers=[("Host", "a.test")])]
    cases["bare-lf-line-endings"] = [Req("GET", "/lf", headers=[("Host", "a.test"), ("X-A", "b")],
                                         eol=b"\n")]
    cases["leading-empty-line"] = [Req("GET", "/", headers=[("Host", "a.test")], prefix=CRLF)]
    cases["connection-close"] = [Req("GET", "/bye", headers=[("Host", "a.test"),
                                                              ("Connection", "close")])]
    cases["absolute-form"] = [Req("GET", "http://a.test:8080/p?x=1", headers=[("Host", "a.test:8080")])]
    cases["options-asterisk"] = [Req("OPTIONS", "*", headers=[("Host", "a.test")])]
    cases["chunked-uppercase-hex"] = [Req(
        "POST", "/", headers=[("Host", "a.test"), ("Transfer-Encoding", "Chunked")],
        body=b"x" * 26, framing="chunked", wire_body=b"001A\r\n" + b"x" * 26 + b"\r\n0\r\n\r\n")]
    cases["repeated-headers"] = [Req("GET", "/", headers=[
        ("Host", "a.test"), ("Cookie", "a=1"), ("Accept", "text/html"), ("Cookie", "b=2"),
        ("accept", "*/*")])]
    cases["utf8-and-percent-path"] = [Req("GET", "/caf\u00e9/%E2%9C%93?q=%20x", headers=[("Host", "a.test")])]
    cases["content-length-zero"] = [Req("POST", "/", headers=[("Host", "a.test"),
                                                               ("Content-Length", "0")])]
    cases["header-whitespace"] = [Req("GET", "/", headers=[("Host", "a.test"),
                                                            ("X-Padded", "  \tvalue with  spaces\t ")])]
    cases["obs-text-and-empty-value"] = [Req("GET", "/", headers=[("Host", "a.test"),
                                                                   ("X-Latin1", b"caf\xe9"),
                                                                   ("X-Empty", "")])]
    cases["keep-alive-post-chunked-with-continue"] = [Req(
        "POST", "/c", headers=[("Host", "a.test"), ("Expect", "100-continue"),
                               ("Transfer-Encoding", "chunked")],
        body=b"data", framing="chunked", expect_continue=True, wire_body=chunked([b"da", b"ta"]))]
    path = reset("http/valid")
    for i, (name, reqs) in enumerate(cases.items(), 1):
        stem = "%03d-%s" % (i, name)
        write(path, stem + ".http", b"".join(r.wire for r in reqs))
        write(path, stem + ".expect", "".join(r.expect() for r in reqs).encode())
    return len(cases)


def http_invalid():
    post = b"POST / HTTP/1.1\r\nHost: a.test\r\n"
    cases = [
        ("cl-and-te", 400, "ContentLengthWithTransferEncoding",
         post + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("te-and-cl", 400, "ContentLengthWithTransferEncoding",
         post + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
        ("duplicate-cl-same", 400, "DuplicateContentLength",
         post + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
        ("duplicate-cl-differ", 400, "DuplicateContentLength",
         post + b"Content-Length: 3\r\nContent-Length: 30\r\n\r\nabc"),
        ("cl-list", 400, "InvalidContentLength", post + b"Content-Length: 3, 3\r\n\r\nabc"),
        ("cl-negative", 400, "InvalidContentLength", post + b"Content-Length: -1\r\n\r\n"),
        ("cl-plus-sign", 400, "InvalidContentLength", post + b"Content-Length: +3\r\n\r\nabc"),
        ("cl-overflow", 400, "InvalidContentLength",
         post + b"Content-Length: 18446744073709551617\r\n\r\n"),
        ("cl-hex", 400, "InvalidContentLength", post + b"Content-Length: 0x10\r\n\r\n"),
        ("te-gzip-only", 400, "InvalidTransferEncoding",
         post + b"Transfer-Encoding: gzip\r\n\r\n"),
        ("te-chunked-then-gzip", 400, "InvalidTransferEncoding",
         post + b"Transfer-Encoding: chunked, gzip\r\n\r\n"),
        ("te-chunked-twice", 400, "InvalidTransferEncoding",
         post + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("te-xchunked", 400, "InvalidTransferEncoding",
         post + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("te-gzip-chunked", 501, "UnsupportedTransferCoding",
         post + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("te-on-http10", 400, "TransferEncodingOnHttp10",
         b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("te-space-before-colon", 400, "InvalidHeaderName",
         post + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ("obs-fold", 400, "InvalidHeaderName",
         b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Long: a\r\n  continued\r\n\r\n"),
        ("obs-fold-transfer-encoding", 400, "InvalidHeaderName",
         post + b"Transfer-Encoding: gzip,\r\n chunked\r\n\r\n0\r\n\r\n"),
        ("bare-cr", 400, "InvalidLineEnding", b"GET / HTTP/1.1\rHost: a.test\r\n\r\n"),
        ("bare-cr-in-header", 400, "InvalidHeaderValue",
         b"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: b\rX-B: c\r\n\r\n"),
        ("missing-host", 400, "MissingHost", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        ("duplicate-host", 400, "DuplicateHost",
         b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: evil.test\r\n\r\n"),
        ("invalid-host", 400, "InvalidHost", b"GET / HTTP/1.1\r\nHost: a.test/evil\r\n\r\n"),
        ("space-in-header-name", 400, "InvalidHeaderName",
         b"GET / HTTP/1.1\r\nHost: a.test\r\nBad Name: x\r\n\r\n"),
        ("nul-in-header-value", 400, "InvalidHeaderValue",
         b"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\x00b\r\n\r\n"),
        ("bad-method-token", 400, "InvalidRequestLine", b"GE(T / HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        ("http2-version", 400, "UnsupportedVersion", b"GET / HTTP/2.0\r\nHost: a.test\r\n\r\n"),
        ("relative-target", 400, "InvalidTarget", b"GET index.html HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        ("asterisk-with-get", 400, "InvalidTarget", b"GET * HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        ("uri-too-long", 414, "UriTooLong",
         b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        ("head-too-large", 431, "HeadTooLarge",
         b"GET / HTTP/1.1\r\nHost: a.test\r\n" + b"".join(
             b"X-Filler-%02d: %s\r\n" % (i, b"f" * 1000) for i in range(20)) + b"\r\n"),
        ("too-many-headers", 431, "TooManyHeaders",
         b"GET / HTTP/1.1\r\nHost: a.test\r\n" + b"".join(
             b"X-H%d: v\r\n" % i for i in range(120)) + b"\r\n"),
        ("body-too-large-content-length", 413, "BodyTooLarge",
         post + b"Content-Length: 1099511627776\r\n\r\n"),
        ("body-too-large-chunked", 413, "BodyTooLarge",
         post + b"Transfer-Encoding: chunked\r\n\r\n100001\r\n"),
        ("chunk-size-not-hex", 400, "InvalidChunkSize",
         post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ("chunk-size-negative", 400, "InvalidChunkSize",
         post + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nabcde\r\n0\r\n\r\n"),
        ("chunk-size-overflow", 400, "ChunkSizeOverflow",
         post + b"Transfer-Encoding: chunked\r\n\r\n10000000000000001\r\nabc\r\n0\r\n\r\n"),
        ("chunk-size-bare-lf", 400, "InvalidChunkLineEnding",
         post + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"),
        ("chunk-data-longer-than-size", 400, "InvalidChunkLineEnding",
         post + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n"),
        ("chunk-extension-too-long", 400, "ChunkExtensionTooLong",
         post + b"Transfer-Encoding: chunked\r\n\r\n3;" + b"e" * 5000 + b"\r\nabc\r\n0\r\n\r\n"),
        ("trailer-obs-fold", 400, "InvalidTrailer",
         post + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n b\r\n\r\n"),
        ("trailer-without-colon", 400, "InvalidTrailer",
         post + b"Transfer-Encoding: chunked\r\n\r\n0\r\nNoColon\r\n\r\n"),
        # Request-target conformance (RFC 9112 §3.2, §3.2.2) and chunk-size whitespace (§7.1).
        ("connect", 501, "ConnectNotSupported",
         b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n"),
        ("fragment-in-target", 400, "InvalidTarget",
         b"GET /p?x=1#frag HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        ("absolute-form-invalid-authority", 400, "InvalidTarget",
         b"PUT s://]ufd/: HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n"),
        ("absolute-form-userinfo", 400, "InvalidTarget",
         b"GET http://user@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        ("chunk-size-trailing-space", 400, "InvalidChunkSize",
         post + b"Transfer-Encoding: chunked\r\n\r\n0 \r\n\r\n"),
        ("chunk-size-trailing-tab", 400, "InvalidChunkSize",
         post + b"Transfer-Encoding: chunked\r\n\r\n5\t\r\nhello\r\n0\r\n\r\n"),
        ("duplicate-content-type", 400, "DuplicateContentType",
         post + b"Content-Type: text/plain\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2\r\n\r\n{}"),
    ]
    path = reset("http/invalid")
    for i, (name, status, variant, wire) in enumerate(cases, 1):
        stem = "%03d-%s" % (i, name)
        write(path, stem + ".http", wire)
        write(path, stem + ".status", f"{status} {variant}\n".encode())
    return len(cases)


# ---------------------------------------------------------------- uwsgi

def packet(pairs, modifier1=0, modifier2=0):
    block = b""
    for k, v in pairs:
        k = k if isinstance(k, bytes) else k.encode()
        v = v if isinstance(v, bytes) else v.encode()
        block += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return struct.pack("<BHB", modifier1, len(block), modifier2) + block


def nginx_params(method="GET", uri="/", query="", ctype="", clen="", https=False,
                 extra_headers=()):
    """The vars nginx sends with its stock uwsgi_params, in its order, then the headers."""
    path = uri.split("?")[0]
    pairs = [("QUERY_STRING", query), ("REQUEST_METHOD", method), ("CONTENT_TYPE", ctype),
             ("CONTENT_LENGTH", clen), ("REQUEST_URI", uri), ("PATH_INFO", path),
             ("DOCUMENT_ROOT", "/usr/share/nginx/html"), ("SERVER_PROTOCOL", "HTTP/1.1"),
             ("REQUEST_SCHEME", "https" if https else "http")]
    if https:
        pairs.append(("HTTPS", "on"))
    pairs += [("REMOTE_ADDR", "127.0.0.1"), ("REMOTE_PORT", "51234"), ("SERVER_PORT", "8080"),
              ("SERVER_NAME", "localhost"), ("HTTP_HOST", "localhost:8080"),
              ("HTTP_USER_AGENT", "curl/8.5.0"), ("HTTP_ACCEPT", "*/*")]
    return pairs + list(extra_headers)


def uwsgi_expect(pairs, body=b"", modifier2=0, scheme="http"):
    lines = ["packet request", f"modifier2 {modifier2}"]
    for k, v in pairs:
        k = k if isinstance(k, bytes) else k.encode()
        v = v if isinstance(v, bytes) else v.encode()
        lines.append(f"var {esc(k)}={esc(v)}")
    lines += [f"content-length {len(body)}", f"scheme {scheme}"]
    if body:
        lines.append("body " + esc(body))
    lines.append("end")
    return "\n".join(lines) + "\n"


def uwsgi_corpus():
    path = reset("uwsgi")
    valid = []
    p = nginx_params()
    valid.append(("nginx-get", packet(p), uwsgi_expect(p)))
    p = nginx_params("GET", "/echo?a=1&b=%20", "a=1&b=%20")
    valid.append(("nginx-get-query", packet(p), uwsgi_expect(p)))
    body = b"name=rcontainer&lang=rust"
    p = nginx_params("POST", "/form", ctype="application/x-www-form-urlencoded",
                     clen=str(len(body)),
                     extra_headers=[("HTTP_CONTENT_TYPE", "application/x-www-form-urlencoded"),
                                    ("HTTP_CONTENT_LENGTH", str(len(body)))])
    valid.append(("nginx-post-form", packet(p) + body, uwsgi_expect(p, body)))
    p = nginx_params(https=True)
    valid.append(("nginx-https", packet(p), uwsgi_expect(p, scheme="https")))
    body = b"chunked upload, de-chunked by nginx"
    p = nginx_params("POST", "/upload", clen=str(len(body)),
                     extra_headers=[("HTTP_TRANSFER_ENCODING", "chunked")])
    valid.append(("nginx-chunked-upload", packet(p) + body, uwsgi_expect(p, body)))
    p = nginx_params(extra_headers=[("HTTP_COOKIE", "session=" + "c" * 12000 + "; theme=dark")])
    valid.append(("nginx-big-cookie", packet(p), uwsgi_expect(p)))
    p = nginx_params(extra_headers=[("UWSGI_SCHEME", "https"), ("UWSGI_SCRIPT", "evil:app")])
    valid.append(("uwsgi-scheme-var", packet(p), uwsgi_expect(p, scheme="https")))
    p = [("REQUEST_METHOD", "GET")]
    valid.append(("reference-worked-example", packet(p), uwsgi_expect(p)))
    p = nginx_params("HEAD", "/caf%C3%A9", extra_headers=[("HTTP_X_LATIN1", b"caf\xe9")])
    valid.append(("nginx-head-binary-value", packet(p), uwsgi_expect(p)))
    valid.append(("ping", bytes([100, 0, 0, 0]), "packet ping\nend\n"))

    invalid = [
        ("http-get-on-uwsgi-socket", "close", "HttpOnUwsgiSocket",
         b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        ("http-post-on-uwsgi-socket", "close", "HttpOnUwsgiSocket",
         b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n"),
        ("modifier-eval", "close", "UnsupportedModifier(22)",
         packet([("CODE", "print(1)")], modifier1=22)),
        ("modifier-spooler", "close", "UnsupportedModifier(17)",
         packet([("a", "b")], modifier1=17)),
        ("vars-over-buffer-size", 431, "VarsTooLarge",
         packet(nginx_params(extra_headers=[("HTTP_COOKIE", "x" * 20000)]))),
        ("empty-key", 400, "EmptyVarKey", packet([("REQUEST_METHOD", "GET"), ("", "x")])),
        ("value-past-block-end", 400, "MalformedVars",
         struct.pack("<BHB", 0, 8, 0) + struct.pack("<H", 1) + b"K" + struct.pack("<H", 9) + b"abc"),
        ("dangling-length-byte", 400, "MalformedVars",
         struct.pack("<BHB", 0, 6, 0) + struct.pack("<H", 1) + b"K" + struct.pack("<H", 0) + b"\x05"),
        ("bad-content-length", 400, "InvalidContentLength",
         packet(nginx_params("POST", clen="12abc")) + b"12abc"),
        ("duplicate-content-length", 400, "DuplicateContentLength",
         packet(nginx_params("POST", clen="3") + [("CONTENT_LENGTH", "300")]) + b"abc"),
        ("content-length-over-limit-post", 413, "BodyTooLarge",
         packet(nginx_params("POST", clen="1099511627776"))),
        ("connect", 501, "ConnectNotSupported",
         packet(nginx_params("CONNECT", "a.test:443"))),
        ("duplicate-content-type", 400, "DuplicateContentType",
         packet(nginx_params("POST", ctype="text/plain", clen="2",
                             extra_headers=[("HTTP_CONTENT_TYPE", "text/plain"),
                                            ("HTTP_CONTENT_TYPE", "application/json")])) + b"{}"),
    ]
    n = 0
    for name, wire, expect in valid:
        n += 1
        stem = "%03d-%s" % (n, name)
        write(path, stem + ".bin", wire)
        write(path, stem + ".expect", expect.encode())
    for name, status, variant, wire in invalid:
        n += 1
        stem = "%03d-%s" % (n, name)
        write(path, stem + ".bin", wire)
        write(path, stem + ".status", f"{status} {variant}\n".encode())
    return n


if __name__ == "__main__":
    total = http_valid() + http_invalid() + uwsgi_corpus()
    print(f"wrote {total} cases")

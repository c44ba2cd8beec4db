"""The Go text/template language as herd.gotemplate implements it.

Every expected string below is what Go's text/template writes for the same template and data
(checked against Go while writing these), so a failure here is a difference from Go.
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.gotemplate import GoMap, GoSlice, GoStruct, Limits, TemplateError, parse

DATA: dict[str, Any] = {
    "A": 1,
    "S": "héllo <wörld> & 'q' \"d\"",
    "F": 2.5,
    "Big": 1234567.0,
    "T": True,
    "N": None,
    "L": [1, "two", 3.0, None, [4]],
    "M": {"b": 2, "a": "x", "c": None, "nested": {"k": "v"}},
    "E": [],
    "Z": 0,
    "U": "日本語",
    "Ctl": "a\tb\nc\x01\x7f",
    "I": [1, 2, 3, 4],
    "Msgs": [{"Role": "user", "Content": "hi"}, {"Role": "assistant", "Content": "yo"}],
}


def render(source: str, data: Any = DATA, **kwargs: Any) -> str:
    return parse(source).render(data, **kwargs)


CASES = [
    # printing values the way fmt's %v does
    ("{{.A}}|{{.F}}|{{.Big}}|{{.T}}|{{.N}}|{{.L}}|{{.M}}|{{.E}}|{{.Missing}}|{{.Z}}",
     "1|2.5|1.234567e+06|true|<no value>|[1 two 3 <nil> [4]]|map[a:x b:2 c:<nil> nested:map[k:v]]|[]|<no value>|0"),
    ("{{ .M.b }}|{{ .M.zz }}|{{ .M.nested.k }}|{{ $.A }}", "2|<no value>|v|1"),
    ('{{ "a" }} {{ 1 }} {{ 1.5 }} {{ 1e3 }} {{ 0x1F }} {{ 017 }} {{ 1_000 }} {{ \'a\' }} {{ -1 }} {{ `raw\\n` }}',
     "a 1 1.5 1000 31 15 1000 97 -1 raw\\n"),
    ('{{ "esc\\t\\x41\\u00e9\\101" }}', "esc\tAéA"),
    # trimming: {{- and -}} eat every adjacent space, tab and newline, exactly like Go
    ("a \n\t {{- .A -}} \n\t b", "a1b"),
    ("a  {{- 1 -}}  b {{- 2}} c {{3 -}}\n  d", "a1b2 c 3d"),
    ("x\r\n{{- .A -}}\r\ny", "x1y"),
    ("{{-3}}", "-3"),  # no space after the dash: a negative number, not a trim marker
    ("{{/* comment */}}a {{- /* trimmed comment */ -}} b", "ab"),
    ("x{{- /* c */ -}}\ny{{/* c2 */ -}}\n   z", "xyz"),
    # range, else, break, continue, variables
    ("{{- range $i, $v := .L }}[{{ $i }}:{{ $v }}]{{ end -}}", "[0:1][1:two][2:3][3:<no value>][4:[4]]"),
    ("{{ range .E }}x{{ else }}empty{{ end }}|{{ range .Missing }}x{{ else }}nothing{{ end }}", "empty|nothing"),
    ("{{ range $k, $v := .M }}{{ $k }}={{ $v }};{{ end }}", "a=x;b=2;c=<no value>;nested=map[k:v];"),
    ("{{ range .I }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }},{{ end }}", "1,2,"),
    ("{{ range .L }}{{ if not . }}{{ continue }}{{ end }}{{ . }},{{ end }}", "1,two,3,[4],"),
    ("{{ range .I }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ range $.I }}{{ if eq . 2 }}{{ break }}{{ end }}"
     "{{ . }}{{ end }}|{{ end }}", "1|1|1|"),
    ("{{ $v := 0 }}{{ range $v = .L }}{{ end }}{{ $v }}", "[4]"),
    ("{{ range 3 }}{{ . }}{{ end }}", "012"),  # Go 1.22+
    ("{{ $x := 1 }}{{ $x }}{{ $x = 2 }}{{ $x }}{{ if true }}{{ $x = 3 }}{{ $y := 9 }}{{ $y }}{{ end }}{{ $x }}",
     "1293"),
    ("{{ $x := 1 }}{{ range .L }}{{ $x = . }}{{ end }}{{ $x }}", "[4]"),
    ("{{ range .Msgs }}{{ $.A }}{{ .Role }}{{ end }}", "1user1assistant"),
    # if / else if / with
    ("{{if .A}}a{{else if .B}}b{{else}}c{{end}}|{{if .Z}}a{{else if .Z}}b{{else}}c{{end}}", "a|c"),
    ("{{ with .M }}{{ .a }}{{ end }}|{{ with .E }}x{{ else }}no{{ end }}|{{ with $y := .A }}{{ $y }}{{ end }}",
     "x|no|1"),
    ("{{ with .Z }}a{{ else with .A }}[{{ . }}]{{ end }}", "[1]"),  # Go 1.23+
    # and/or return an operand and stop early; not, comparisons (eq takes several)
    ('{{ and .A .Z .S }}|{{ or .Z .E "d" }}|{{ or .Z .E }}|{{ .A | and 2 }}|{{ and 0 (len .Missing) }}',
     "0|d|[]|1|0"),
    ('{{ eq .A 1 }}|{{ eq .A 2 3 1 }}|{{ eq .S "x" }}|{{ ne .A 2 }}|{{ lt 1 2 }}|{{ le 2 2 }}|{{ gt "b" "a" }}|'
     "{{ ge 1.5 2.5 }}|{{ not .E }}", "true|true|false|true|true|true|true|false|true"),
    ('{{ eq .Missing "x" }}|{{ eq .N "x" }}|{{ eq .N .Missing }}|{{ eq nil nil }}', "false|false|true|true"),
    # len counts bytes; index and slice on lists, maps and strings
    ("{{ len .S }}|{{ len .L }}|{{ len .M }}|{{ len .U }}|{{ len .E }}", "25|5|4|9|0"),
    ('{{ index .L 1 }}|{{ index .L 4 0 }}|{{ index .M "a" }}|{{ index .M "zz" }}|{{ index .U 0 }}|{{ index .L 3 }}',
     "two|4|x|<no value>|230|<no value>"),
    ("{{ slice .L 1 3 }}|{{ slice .S 1 3 }}|{{ slice .L 2 }}|{{ slice .L }}|{{ slice .U 3 }}",
     "[two 3]|é|[3 <nil> [4]]|[1 two 3 <nil> [4]]|本語"),
    ("{{ (index .Msgs 1).Role }}|{{ index .Msgs 0 \"Content\" }}", "assistant|hi"),
    # pipelines and parentheses
    ('{{ "x" | printf "%s-%s" "y" }}|{{ .A | printf "%d" }}|{{ .S | len }}|{{ (printf "%s" "a") | printf "%s%s" "b" }}',
     "y-x|1|25|ba"),
    # print, println, printf
    ('{{ print 1 2 "a" "b" 3 .N .Missing .L }}|{{ println 1 "a" }}',
     "1 2ab3 <nil> <nil> [1 two 3 <nil> [4]]|1 a\n"),
    ('{{ printf "%d-%s-%v-%q-%x-%X-%o-%b-%c-%U-%t" 42 "s" .L "q\\"" 255 "hi" 8 5 65 65 true }}',
     '42-s-[1 two 3 <nil> [4]]-"q\\""-ff-6869-10-101-A-U+0041-true'),
    ('{{ printf "%5d|%-5d|%05d|%+d|% d|%x|%#x|%#o|%.3d|%8.3f|%-8.2f|%e|%E|%g|%G|%.2e|%.3g" 42 42 -42 5 5 -255 255 8 7 '
     "3.14159 2.5 123456.789 0.000123 1e21 1e-7 12345.678 0.00012345 }}",
     "   42|42   |-0042|+5| 5|-ff|0xff|010|007|   3.142|2.50    |1.234568e+05|1.230000E-04|1e+21|1E-07|1.23e+04|"
     "0.000123"),
    ('{{ printf "%s|%10s|%-10s|%.2s|%q|%+q|%x|% x|%T|%T" "héllo" "ab" "ab" "héllo" "日本\\n" "日本" "hé" "hé" .M .F }}',
     'héllo|        ab|ab        |hé|"日本\\n"|"\\u65e5\\u672c"|68c3a9|68 c3 a9|map[string]interface {}|float64'),
    ('{{ printf "%d %d" 1 }}|{{ printf "%d" 1 2 "x" .N }}|{{ printf "%z" 3 }}|{{ printf "%d" "s" }}|'
     '{{ printf "%s" .N }}|{{ printf "%d" .L }}|{{ printf "%*d|%.*f" 5 1 2 3.14159 }}',
     "1 %!d(MISSING)|1%!(EXTRA int=2, string=x, <nil>)|%!z(int=3)|%!d(string=s)|%!s(<nil>)|"
     "[1 %!d(string=two) %!d(float64=3) <nil> [4]]|    1|3.14"),
    ('{{ printf "%v %v %v %v %v %v" 1e6 1e5 1234567.0 0.0001 0.00001 100.0 }}',
     "1e+06 100000 1.234567e+06 0.0001 1e-05 100"),
    # escaping functions
    ("{{ html .S }}", "héllo &lt;wörld&gt; &amp; &#39;q&#39; &#34;d&#34;"),
    ("{{ js .S }}|{{ js .Ctl }}", "héllo \\u003Cwörld\\u003E \\u0026 \\'q\\' \\\"d\\\"|a\\u0009b\\u000Ac\\u0001\x7f"),
    ('{{ urlquery "a b&c=d/é~_.-" }}|{{ html nil }}|{{ html 1 2 }}', "a+b%26c%3Dd%2F%C3%A9~_.-|&lt;no value&gt;|1 2"),
    # {{define}}, {{template}}, {{block}}
    ('{{ template "x" . }}{{ define "x" }}X{{ .A }}{{ end }}|{{ block "y" .U }}Y{{ . }}{{ end }}', "X1|Y日本語"),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_matches_go(source: str, expected: str) -> None:
    assert render(source) == expected


def test_json_is_go_json_marshal() -> None:
    data = {"M": {"b": "<&>\u2028", "a": [1.0, 1e21, 1e-7, 12345678.0, -0.0, 0.000001, None, True]}, "S": "é\n\x01"}
    # Keys sorted, HTML characters escaped, Go's float format (e-7 not e-07), compact.
    assert render("{{ json .M }}", data) == (
        '{"a":[1,1e+21,1e-7,12345678,-0,0.000001,null,true],"b":"\\u003c\\u0026\\u003e\\u2028"}')
    assert render("{{ json .S }}|{{ json .Missing }}|{{ json .M.a }}", data).startswith('"é\\n\\u0001"|null|[1,')
    assert render('{{ json "\\b\\f" }}', data) == '"\\b\\f"'  # Go 1.22+ writes the short escapes
    assert render("{{ json .F }}", {"F": float("nan")}) == ""  # json.Marshal fails; Ollama prints nothing


def test_missing_keys_follow_the_missingkey_option() -> None:
    # Default ("invalid"): a missing key is no value, and fields of no value are no value.
    assert render("{{ .Missing.Foo }}") == "<no value>"
    # missingkey=zero (Ollama's choice): a missing key is a nil interface, and a field of nil fails.
    with pytest.raises(TemplateError, match="nil pointer evaluating interface"):
        render("{{ .Missing.Foo }}", missing_key="zero")
    assert render("{{ $x := .Missing }}{{ $x.Foo }}", missing_key="zero") == "<no value>"


def test_go_structs_slices_and_maps() -> None:
    inner = GoStruct("pkg.Fn", {"Name": "f", "Args": GoMap({"b": 1, "a": "<"}, string=lambda m: "ARGS")})
    msg = GoStruct("pkg.Msg", {"Role": "user", "Calls": GoSlice([inner]), "Empty": GoSlice(nil=True)}, pointer=True)
    data = {"Msg": msg}
    assert render("{{ .Msg }}", data) == "{user [{f ARGS}] []}"  # an action prints *T as T
    assert render("{{ print .Msg }}", data) == "&{user [{f ARGS}] []}"
    assert render("{{ json .Msg }}", data) == (
        '{"Role":"user","Calls":[{"Name":"f","Args":{"a":"\\u003c","b":1}}],"Empty":null}')
    assert render("{{ if .Msg }}t{{ end }}{{ if .Msg.Empty }}x{{ end }}{{ range .Msg.Calls }}{{ .Args.a }}{{ end }}",
                  data) == "t<"
    with pytest.raises(TemplateError, match=r"can't evaluate field Nope in type \*pkg\.Msg"):
        render("{{ .Msg.Nope }}", data)


@pytest.mark.parametrize(("source", "message"), [
    ("{{ .A", "unclosed action"),
    ('{{ "abc }}', "unterminated quoted string"),
    ("{{ (1 }}", "unclosed left paren"),
    ("{{ 1) }}", 'unexpected "\\)" in command'),
    ("{{/* no end", "unclosed comment"),
    ("{{ /* x */ }}", "unexpected"),
    ("{{ nofunc 1 }}", 'function "nofunc" not defined'),
    ("{{ $undefined }}", 'undefined variable "\\$undefined"'),
    ("{{ .A }", 'unexpected "}" in operand'),  # the parser meets the stray brace before the lexer's EOF
    ("{{ | .A }}", 'unexpected "\\|" in command'),
    ("{{ }}", "missing value for command"),
    ("{{ .A | 1 }}", "non executable command in pipeline stage 2"),
    ("{{ $x, $y := 1 }}", "too many declarations"),
    ("{{ break }}", "{{break}} outside {{range}}"),
    ("{{ end }}", "unexpected {{end}}"),
    ("{{ if 1 }}", "unexpected EOF"),
    ("{{ 08 }}", "integer overflow"),
    ("{{ 1a }}", "bad number syntax"),
    ("{{ @ }}", 'unexpected "@" in command'),
    ("{{ € }}", "unrecognized character in action: U\\+20AC"),
    ('{{ define "a" }}A{{ end }}{{ define "a" }}B{{ end }}', "multiple definition"),
])
def test_parse_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message) as caught:
        parse(source)
    assert caught.value.line == 1 and caught.value.column is not None


@pytest.mark.parametrize(("source", "message"), [
    ("{{ .A 1 }}", "A is not a method but has arguments"),
    ("{{ nil }}", "nil is not a command"),
    ("{{ 1 2 }}", "can't give argument to non-function 1"),
    ("{{ eq .A 1.0 }}", "incompatible types for comparison"),
    ("{{ lt .T .T }}", "invalid type for comparison"),
    ("{{ eq .L .L }}", "non-comparable type"),
    ("{{ len .A }}", "len of type int"),
    ("{{ index .L 5 }}", "index out of range: 5"),
    ("{{ index .M 1 }}", "value has type int; should be string"),
    ("{{ slice .L 3 1 }}", "invalid slice index: 3 > 1"),
    ("{{ printf 1 }}", "expected string; found 1"),
    ("{{ not 1 2 }}", "wrong number of args for not: want 1 got 2"),
    ("{{ range .S }}{{ end }}", "range can't iterate over"),
    ("{{ .S.Foo }}", "can't evaluate field Foo in type string"),
    ('{{ template "nope" }}', 'template "nope" not defined'),
    ("{{ $y = 1 }}", "undefined variable: \\$y"),
])
def test_execution_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message) as caught:
        render(source)
    assert caught.value.line == 1


def test_templates_cannot_reach_python() -> None:
    # Fields read dict keys only: no attributes, methods or dunders of the Python objects behind them.
    with pytest.raises(TemplateError):
        render("{{ .S.__class__ }}")
    with pytest.raises(TemplateError):
        render("{{ .M.items }}", {"M": GoStruct("T", {})})
    assert render("{{ .M.items }}") == "<no value>"  # a dict's "items" is only a missing key
    with pytest.raises(TemplateError, match="not defined"):
        parse("{{ __import__ }}")


def test_resource_bounds() -> None:
    with pytest.raises(TemplateError, match="larger than"):
        parse("x" * ((1 << 20) + 1))
    small = Limits(max_output_chars=100, max_range_iterations=50, max_steps=10_000, max_depth=5)
    with pytest.raises(TemplateError, match="output is longer"):
        parse("{{ range 60 }}xx{{ end }}", limits=Limits(max_output_chars=100)).render({})
    with pytest.raises(TemplateError, match="range iterations"):
        parse("{{ range 10 }}{{ range 10 }}{{ end }}{{ end }}", limits=small).render({})
    with pytest.raises(TemplateError, match="range iterations"):
        render("{{ range 1000000000000 }}{{ end }}")
    with pytest.raises(TemplateError, match="steps"):
        parse("{{ range 100 }}{{ range 100 }}{{ . }}{{ end }}{{ end }}",
              limits=Limits(max_steps=10_000)).render({})
    with pytest.raises(TemplateError, match="nesting deeper"):
        parse("{{ if 1 }}" * 6 + "{{ end }}" * 6, limits=small)
    with pytest.raises(TemplateError, match="nesting deeper"):
        parse("{{ " + "(" * 200 + "1" + ")" * 200 + " }}")
    with pytest.raises(TemplateError, match="maximum template depth"):
        render('{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}')
    # A string doubled in a loop is stopped as soon as it outgrows the output limit.
    doubling = '{{ $s := "xxxxxxxxxx" }}{{ range 40 }}{{ $s = printf "%s%s" $s $s }}{{ end }}'
    with pytest.raises(TemplateError, match="longer than"):
        parse(doubling, limits=Limits(max_output_chars=1000)).render({})
    assert "%!(BADWIDTH)" in render('{{ printf "%99999999d" 1 }}')  # Go's own cap on widths

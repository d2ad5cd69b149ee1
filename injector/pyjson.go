package main

// JSON read and written the way Python's json module does it, because the worker's output must be
// byte-identical to the Python worker's: object keys keep their order (a repeated key keeps its
// first place and its last value), integers keep every digit, floats print as Python's repr
// (1.0, 1e+16), NaN and Infinity are accepted, and a lone surrogate escape (\udc80) stands for the
// raw byte that Python's "surrogateescape" would give. Go's encoding/json does none of these.

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// pyInt is an integer as its decimal digits (Python's ints have no size limit).
type pyInt string

// object is a JSON object with its keys in document order.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) get(k string) (any, bool) { v, ok := o.vals[k]; return v, ok }

func (o *object) set(k string, v any) {
	if o.vals == nil {
		o.vals = map[string]any{}
	}
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

type parser struct {
	s   string
	pos int
}

// loads parses a whole document (surrounding JSON whitespace allowed), like json.loads.
func loads(s string) (any, error) {
	p := &parser{s: s}
	p.ws()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.pos != len(p.s) {
		return nil, fmt.Errorf("Extra data: char %d", p.pos)
	}
	return v, nil
}

func (p *parser) ws() {
	for p.pos < len(p.s) && strings.IndexByte(" \t\n\r", p.s[p.pos]) >= 0 {
		p.pos++
	}
}

func (p *parser) fail(what string) error {
	return fmt.Errorf("%s: char %d", what, p.pos)
}

func (p *parser) lit(word string) bool {
	if strings.HasPrefix(p.s[p.pos:], word) {
		p.pos += len(word)
		return true
	}
	return false
}

func (p *parser) value() (any, error) {
	if p.pos >= len(p.s) {
		return nil, p.fail("Expecting value")
	}
	switch c := p.s[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str()
	case p.lit("null"):
		return nil, nil
	case p.lit("true"):
		return true, nil
	case p.lit("false"):
		return false, nil
	case p.lit("NaN"):
		return math.NaN(), nil
	case p.lit("Infinity"):
		return math.Inf(1), nil
	case p.lit("-Infinity"):
		return math.Inf(-1), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return nil, p.fail("Expecting value")
}

func digits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// number follows Python's pattern (-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?.
func (p *parser) number() (any, error) {
	start, i := p.pos, p.pos
	if p.s[i] == '-' {
		i++
	}
	if i < len(p.s) && p.s[i] == '0' {
		i++
	} else if j := digits(p.s, i); j > i {
		i = j
	} else {
		return nil, p.fail("Expecting value")
	}
	isFloat := false
	if i+1 < len(p.s) && p.s[i] == '.' && digits(p.s, i+1) > i+1 {
		i, isFloat = digits(p.s, i+1), true
	}
	if i < len(p.s) && (p.s[i] == 'e' || p.s[i] == 'E') {
		j := i + 1
		if j < len(p.s) && (p.s[j] == '+' || p.s[j] == '-') {
			j++
		}
		if k := digits(p.s, j); k > j {
			i, isFloat = k, true
		}
	}
	p.pos = i
	text := p.s[start:i]
	if !isFloat {
		if strings.TrimLeft(text, "-0") == "" {
			return pyInt("0"), nil // Python's int("-0") is 0
		}
		return pyInt(text), nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range: inf or 0, as Python
		return nil, p.fail("Expecting value")
	}
	return f, nil
}

func (p *parser) object() (any, error) {
	o := &object{vals: map[string]any{}}
	p.pos++
	p.ws()
	if p.pos < len(p.s) && p.s[p.pos] == '}' {
		p.pos++
		return o, nil
	}
	for {
		if p.pos >= len(p.s) || p.s[p.pos] != '"' {
			return nil, p.fail("Expecting property name enclosed in double quotes")
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.pos >= len(p.s) || p.s[p.pos] != ':' {
			return nil, p.fail("Expecting ':' delimiter")
		}
		p.pos++
		p.ws()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		o.set(k.(string), v)
		p.ws()
		if p.pos < len(p.s) && p.s[p.pos] == ',' {
			p.pos++
			p.ws()
			continue
		}
		if p.pos < len(p.s) && p.s[p.pos] == '}' {
			p.pos++
			return o, nil
		}
		return nil, p.fail("Expecting ',' delimiter")
	}
}

func (p *parser) array() (any, error) {
	out := []any{}
	p.pos++
	p.ws()
	if p.pos < len(p.s) && p.s[p.pos] == ']' {
		p.pos++
		return out, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		p.ws()
		if p.pos < len(p.s) && p.s[p.pos] == ',' {
			p.pos++
			p.ws()
			continue
		}
		if p.pos < len(p.s) && p.s[p.pos] == ']' {
			p.pos++
			return out, nil
		}
		return nil, p.fail("Expecting ',' delimiter")
	}
}

func hex4(s string) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(s[:4], 16, 32)
	return rune(v), err == nil
}

// appendCodePoint writes a code point; a lone surrogate U+DC80..U+DCFF is the byte it escapes.
func appendCodePoint(b []byte, r rune) []byte {
	if r >= 0xDC80 && r <= 0xDCFF {
		return append(b, byte(r-0xDC00))
	}
	if r >= 0xD800 && r <= 0xDFFF { // other lone surrogates: their 3-byte (WTF-8) form
		return append(b, byte(0xE0|r>>12), byte(0x80|(r>>6)&0x3F), byte(0x80|r&0x3F))
	}
	return utf8.AppendRune(b, r)
}

func (p *parser) str() (any, error) {
	p.pos++
	var b []byte
	for {
		if p.pos >= len(p.s) {
			return nil, p.fail("Unterminated string")
		}
		c := p.s[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(b), nil
		case c < 0x20:
			return nil, p.fail("Invalid control character")
		case c != '\\':
			b = append(b, c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.s) {
			return nil, p.fail("Unterminated string")
		}
		e := p.s[p.pos+1]
		p.pos += 2
		if simple := strings.IndexByte(`"\/bfnrt`, e); simple >= 0 {
			b = append(b, "\"\\/\b\f\n\r\t"[simple])
			continue
		}
		if e != 'u' {
			return nil, p.fail("Invalid \\escape")
		}
		r, ok := hex4(p.s[p.pos:])
		if !ok {
			return nil, p.fail("Invalid \\uXXXX escape")
		}
		p.pos += 4
		if r >= 0xD800 && r <= 0xDBFF && strings.HasPrefix(p.s[p.pos:], `\u`) {
			if lo, ok := hex4(p.s[p.pos+2:]); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
				p.pos += 6
			}
		}
		b = appendCodePoint(b, r)
	}
}

// dumps writes a value as json.dumps(value, separators=(",", ":"), ensure_ascii=ascii).
func dumps(v any, ascii bool) string {
	var sb strings.Builder
	encode(&sb, v, ascii)
	return sb.String()
}

func encode(sb *strings.Builder, v any, ascii bool) {
	switch x := v.(type) {
	case nil:
		sb.WriteString("null")
	case bool:
		sb.WriteString(strconv.FormatBool(x))
	case pyInt:
		sb.WriteString(string(x))
	case int:
		sb.WriteString(strconv.Itoa(x))
	case float64:
		sb.WriteString(floatRepr(x))
	case string:
		quote(sb, x, ascii)
	case []any:
		sb.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				sb.WriteByte(',')
			}
			encode(sb, e, ascii)
		}
		sb.WriteByte(']')
	case *object:
		sb.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				sb.WriteByte(',')
			}
			quote(sb, k, ascii)
			sb.WriteByte(':')
			encode(sb, x.vals[k], ascii)
		}
		sb.WriteByte('}')
	default:
		panic(fmt.Sprintf("dumps: unexpected %T", v))
	}
}

// floatRepr is Python's repr of a float as json.dumps writes it.
func floatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // shortest digits: d.ddde±XX
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if decpt := exp + 1; decpt <= -4 || decpt > 16 {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// quote writes a JSON string: ascii escapes every non-ASCII character (\uXXXX, pairs above
// U+FFFF), and a byte that is not UTF-8 as the lone surrogate Python holds for it (\udcXX).
func quote(sb *strings.Builder, s string, ascii bool) {
	sb.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				sb.WriteString(`\"`)
			case '\\':
				sb.WriteString(`\\`)
			case '\n':
				sb.WriteString(`\n`)
			case '\r':
				sb.WriteString(`\r`)
			case '\t':
				sb.WriteString(`\t`)
			case '\b':
				sb.WriteString(`\b`)
			case '\f':
				sb.WriteString(`\f`)
			default:
				if c < 0x20 || (ascii && c == 0x7f) {
					fmt.Fprintf(sb, `\u%04x`, c)
				} else {
					sb.WriteByte(c)
				}
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			if ascii {
				fmt.Fprintf(sb, `\u%04x`, 0xDC00+int(c))
			} else {
				sb.WriteByte(c) // written back as the byte it was
			}
			i++
			continue
		}
		switch {
		case !ascii:
			sb.WriteString(s[i : i+n])
		case r > 0xFFFF:
			r -= 0x10000
			fmt.Fprintf(sb, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			fmt.Fprintf(sb, `\u%04x`, r)
		}
		i += n
	}
	sb.WriteByte('"')
}

// pyRepr is Python's repr() of a str, for messages that quote a name or a value.
func pyRepr(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var sb strings.Builder
	sb.WriteByte(q)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&sb, `\udc%02x`, s[i])
		case r == '\\' || byte(r) == q && r < 128:
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, r)
		default:
			sb.WriteString(s[i : i+n])
		}
		i += n
	}
	sb.WriteByte(q)
	return sb.String()
}

package room

import (
	"strings"

	"github.com/kyokomi/emoji/v2"
)

// maxShortcode is the longest shortcode looked up, colons included: longer runs between two
// colons are left alone without a look-up.
const maxShortcode = 64

// expandEmoji turns the shortcodes in text (":wave:", ":+1:") into their emoji, from the
// maintained table of github.com/kyokomi/emoji (the GitHub and Slack names). Anything else
// between colons is left as it is. It reads text once: its cost is bounded by the text's length.
func expandEmoji(text string) string {
	if strings.IndexByte(text, ':') < 0 {
		return text
	}
	codes := emoji.CodeMap()
	var b strings.Builder
	last := 0 // text[last:] is not written yet
	for i := 0; i < len(text); {
		if text[i] != ':' {
			i++
			continue
		}
		j := i + 1
		for j < len(text) && j-i < maxShortcode && isShortcodeByte(text[j]) {
			j++
		}
		if j > i+1 && j < len(text) && text[j] == ':' {
			if e, ok := codes[text[i:j+1]]; ok {
				b.WriteString(text[last:i])
				b.WriteString(e)
				last = j + 1
				i = j + 1
				continue
			}
		}
		i = j // text[i+1:j] holds no colon; the one at j, if any, may open a shortcode
	}
	if last == 0 {
		return text
	}
	b.WriteString(text[last:])
	return b.String()
}

// isShortcodeByte reports the bytes a shortcode's name is made of.
func isShortcodeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '+' || c == '-' || c >= 'A' && c <= 'Z'
}

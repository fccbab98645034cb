// Package chat is the chat's vocabulary, defined once for the room, its stores and its
// transports: names and the rules they follow, the keys that own them, messages, queued private
// messages and bans, the errors a store reports, and the cleaning that makes peer-supplied text
// safe to show (Sanitize, Excerpt). It depends on nothing else of chatd.
package chat

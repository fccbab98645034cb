package sqlite

import (
	"database/sql"
	"sync"
)

// statements holds the store's look-ups prepared once. database/sql with SQLite parses a query
// anew on every call otherwise, and for the look-ups every login makes (a name's identity, a
// key's names) parsing was most of the cost: about a fifth of the server's CPU while a thousand
// people connect.
type statements struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// get returns query prepared, preparing it on first use.
func (c *statements) get(query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.m[query]; st != nil {
		return st, nil
	}
	st, err := c.db.Prepare(query)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = make(map[string]*sql.Stmt)
	}
	c.m[query] = st
	return st, nil
}

// close closes every prepared statement; the database is closed next.
func (c *statements) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// preparedQuerier runs statements prepared once, within tx when it is set.
type preparedQuerier struct {
	stmts *statements
	tx    *sql.Tx
}

func (p preparedQuerier) stmt(query string) (*sql.Stmt, error) {
	st, err := p.stmts.get(query)
	if err != nil || p.tx == nil {
		return st, err
	}
	return p.tx.Stmt(st), nil // closed with the transaction
}

func (p preparedQuerier) Query(query string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.Query(args...)
}

func (p preparedQuerier) Exec(query string, args ...any) (sql.Result, error) {
	st, err := p.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.Exec(args...)
}

// prepared is the querier for look-ups, within tx when it is set.
func (s *SQLite) prepared(tx *sql.Tx) preparedQuerier {
	return preparedQuerier{stmts: &s.stmts, tx: tx}
}

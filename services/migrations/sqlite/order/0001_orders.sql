-- Orders under an idempotency key per user. `request_hash` is the SHA-256 of the request's
-- lines (a key reused with another body is refused); `claimed_ms` is when a pending claim
-- was last taken (epoch milliseconds), so a claim whose handler died can be taken over.
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    claimed_ms INTEGER NOT NULL,
    total_cents INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    created TEXT NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE INDEX order_items_by_order ON order_items(order_id);
CREATE INDEX orders_placed ON orders(status, id);

CREATE TABLE profiles (
    user_id BIGINT PRIMARY KEY,
    display_name TEXT NOT NULL,
    email TEXT,
    favourite_sport TEXT,
    updated TEXT NOT NULL
);

CREATE TABLE profiles (
    user_id INTEGER PRIMARY KEY,
    display_name TEXT NOT NULL,
    email TEXT,
    favourite_sport TEXT,
    updated TEXT NOT NULL
);

package smoke

default allow := false

allow if input.user == "admin"

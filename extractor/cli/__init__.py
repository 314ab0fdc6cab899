"""The command line: parse arguments, call run or review, print."""

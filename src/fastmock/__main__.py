from fastmock.cli import main

main()

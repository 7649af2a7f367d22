from tenangdb.cli.main import main

main()

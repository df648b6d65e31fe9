from raptorflow.cli import main

main()

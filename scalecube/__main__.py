from scalecube.cli import main

main()

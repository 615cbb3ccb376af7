from .interface.entry import main

main()

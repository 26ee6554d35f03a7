from reelsmith.agent.cli import main

main()

using System.CommandLine;

namespace ProxySelection.LabTool.Lab;

/// <summary><c>proxysel-lab demo</c>: the guided tour, real topologies in network namespaces on this machine.</summary>
internal static class LabCommand
{
    public static Command Build(TextWriter stderr)
    {
        var size = new Option<int>("--size") { Description = "Megabytes to download (1..500)", DefaultValueFactory = _ => 50 };
        var rate = new Option<int>("--rate") { Description = "Rate limit of each client path in Mbit/s (1..1000)", DefaultValueFactory = _ => 50 };
        var scenario = new Option<string>("--scenario") { Description = "chain (MPTCP client, P1, P2, TCP server), hybrid (TCP client, upgrade CPE, two paths, downgrade aggregation, TCP server) or both", DefaultValueFactory = _ => "both" };
        scenario.AcceptOnlyFromAmong("chain", "hybrid", "both");
        var noInstall = new Option<bool>("--no-install") { Description = "Do not install missing Debian packages; fail with their names instead" };
        var daemonPath = DaemonLocator.CreateOption();
        var demo = new Command("demo", "Bring up an MPTCP client with two paths, two proxies and a TCP-only server in namespaces, download through them, show who held the connection, the subflows, throughput and the trace, and remove everything")
        {
            size, rate, scenario, noInstall, daemonPath,
        };
        demo.SetAction(result =>
        {
            int megabytes = result.GetValue(size);
            int mbit = result.GetValue(rate);
            if (megabytes is < 1 or > 500 || mbit is < 1 or > 1000)
            {
                stderr.WriteLine("--size must be 1..500 and --rate 1..1000");
                return ExitCodes.Usage;
            }

            if (DaemonLocator.Resolve(result.GetValue(daemonPath), stderr) is not { } daemon)
            {
                return ExitCodes.DaemonNotFound;
            }

            // Ours to handle: the demo cancels its steps and tears down before we exit.
            using var interrupt = new InterruptSignals();
            var demoRun = new LabDemo(result.InvocationConfiguration.Output, stderr, new LabDemoOptions(megabytes, mbit, !result.GetValue(noInstall), result.GetValue(scenario) != "hybrid", result.GetValue(scenario) != "chain", daemon), TimeProvider.System);
            return demoRun.RunAsync(interrupt.Token).GetAwaiter().GetResult();
        });
        return demo;
    }
}

using System.CommandLine;
using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.LabTool;

/// <summary>
/// <c>proxysel-lab simulate compare</c>: the implicit-vs-explicit comparison of the IETF 91 analysis, run on the chain
/// simulator (the real negotiator, a fake clock) and printed as the table recorded in spec Appendix B.
/// </summary>
internal static class SimulateCommand
{
    public static Command Create()
    {
        var compare = new Command("compare", "Chains of 1-4 downgrade proxies, implicit vs explicit: context holders, extra upstream connections, round trips added at setup");
        compare.SetAction(result =>
        {
            result.InvocationConfiguration.Output.Write(CompareTable());
            return ExitCodes.Ok;
        });
        return new Command("simulate", "Run the deterministic chain simulator") { compare };
    }

    /// <summary>The table <c>simulate compare</c> prints: 1-4 proxies, 5 ms per link one way, seed 1.</summary>
    public static string CompareTable() => SetupComparison.Format(SetupComparison.Compute());
}

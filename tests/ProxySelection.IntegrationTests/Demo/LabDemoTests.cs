using System.Text.RegularExpressions;
using ProxySelection.IntegrationTests.Proxy;

namespace ProxySelection.IntegrationTests.Demo;

/// <summary>
/// <c>proxysel-lab demo</c> end to end, as a user runs it: a real MPTCP download through P1 and P2 in namespaces, the
/// report, and nothing left behind, whether it ends normally or by SIGINT.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class LabDemoTests
{
    [Test]
    public async Task Demo_BothScenarios_PrintsHoldersTwoSubflowsThroughputTraceAndLeavesNothing()
    {
        var rulesBefore = await DemoProcess.RootRulesAsync();
        using var demo = DemoProcess.Start();
        int exit = await demo.WaitForExitAsync(DemoProcess.Timeout);
        var output = demo.Output;
        TestContext.Out.WriteLine(output);

        Assert.That(exit, Is.Zero, output);
        Assert.That(output, Does.Contain("expected holder: P1 (policy first); actual: P1 ✔"));
        Assert.That(output, Does.Contain("-> passed it through untouched ✔"));
        Assert.That(output, Does.Match(@"captures on both sides of P2 \(SYN/FIN/RST segments\): [0-9]+ on each side, identical byte for byte ✔"));
        Assert.That(output, Does.Contain("Download: complete, SHA-256 matches"));
        Assert.That(Regex.Matches(output, @"^  (dsl  198\.18\.1\.2|lte  198\.18\.2\.2):[0-9]+ +-> 198\.18\.4\.2:80$", RegexOptions.Multiline), Has.Count.EqualTo(2));
        Assert.That(output, Does.Contain("2 subflows seen at the client; the holder's client leg reports subflows=2"));
        Assert.That(output, Does.Match(@"total: 52428800 bytes in [0-9.]+ s = [0-9.]+ Mbit/s"));
        Assert.That(output, Does.Match(@"dsl +[0-9]+ bytes received = +[0-9.]+ Mbit/s"));
        Assert.That(output, Does.Match(@"lte +[0-9]+ bytes received = +[0-9.]+ Mbit/s"));
        // The trace in order: SYN held and probed, probe answered by a TCP-only server, intercepted, relay closed; the join
        // was taken over (by the kernel on the daemon's defaults, Proxy:KernelJoins, or by the engine).
        Assert.That(output, Does.Match(@"(?s)HoldAndProbe \(CacheMiss\).*mp_capable=False.*Intercept \(ProbeAnswered\).*relay .*Completed up=[0-9]+ down=52429[0-9]+ subflows=2"));
        Assert.That(output, Does.Match(@"P1: intercepted 1 connection\(s\), [1-9][0-9]* join\(s\) \([0-9]+ taken in the kernel\)"));
        Assert.That(output, Does.Contain("MpCapable: Pass (NotSelected)"));
        Assert.That(Regex.Matches(output, "both stopped and removed their rules"), Has.Count.EqualTo(2));

        // Hybrid access: a TCP client and a TCP server, MPTCP with two subflows between the upgrade and downgrade proxies.
        Assert.That(output, Does.Contain("actual:   CPE client leg NotMptcp, upstream Active ✔"));
        Assert.That(output, Does.Contain("AGG client leg Active, upstream FellBackToTcp ✔"));
        Assert.That(output, Does.Contain("2 subflows seen at the CPE; AGG's client leg reports subflows=2"));
        Assert.That(Regex.Matches(output, @"^  (dsl  198\.18\.11\.2|lte  198\.18\.12\.2):[0-9]+ +-> 198\.18\.13\.2:80$", RegexOptions.Multiline), Has.Count.EqualTo(2));
        Assert.That(output, Does.Match(@"(?s)Tcp: HoldAndProbe \(CacheMiss\).*mp_capable=True.*client=NotMptcp upstream=Active"));
        // One path against both through the same proxies, measured alike (the ratio itself is asserted by ProxyRoleTests).
        Assert.That(output, Does.Match(@"one path  \(dsl subflow only\) +[0-9.]+ Mbit/s"));
        Assert.That(output, Does.Match(@"both paths \(dsl and lte subflows\) +[0-9.]+ Mbit/s"));
        Assert.That(output, Does.Match(@"both paths / one path = [0-9.]+ x"));
        Assert.That(output, Does.Contain("Words used below"), "the legend for holder, pass-through, subflow and units");
        Assert.That(output, Does.Contain("Everything came out as expected."));
        Assert.That(output, Does.Contain("nothing of this run is left"));

        Assert.That(await DemoProcess.NamespacesLeftAsync(demo.Prefix), Is.Empty);
        Assert.That(await DemoProcess.RootRulesAsync(), Is.EqualTo(rulesBefore));
        Assert.That(demo.ProxyPids(), Has.Count.EqualTo(4));
        Assert.That(demo.ProxyPids().Where(pid => Directory.Exists($"/proc/{pid}")), Is.Empty);
    }

    [Test]
    public async Task Demo_NotRoot_SaysSoAndExits3()
    {
        // The clone may sit in a folder only root can enter (mktemp -d is 0700): the unprivileged user runs a copy in /tmp.
        var copy = Path.Combine("/tmp", "psel-noroot-" + Guid.NewGuid().ToString("N")[..12]);
        int exit;
        DemoProcess demo;
        try
        {
            ProxyLab.CopyDaemon(copy);
            demo = DemoProcess.Start(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=/tmp", "dotnet"], directory: copy);
            exit = await demo.WaitForExitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            Directory.Delete(copy, recursive: true);
        }

        using var _ = demo;

        Assert.That(exit, Is.EqualTo(3), demo.Output);
        Assert.That(demo.Output, Does.Contain("proxysel-lab demo needs root"));
        Assert.That(demo.Output, Does.Contain("sudo dotnet run --project src/ProxySelection.LabTool -c Release -- demo"));
    }

    [Test]
    public async Task Demo_SigintAfterChainUp_TearsDownAndExits130()
    {
        // SIGINT back to its default: a test run started in the background of a non-interactive shell inherits it
        // ignored, and .NET (like any program) keeps an inherited "ignore" for SIGINT, so Ctrl-C would never arrive.
        using var demo = DemoProcess.Start(wrapper: ["env", "--default-signal=INT", "dotnet"], extra: ["--size", "200"]);
        await demo.WaitForOutputAsync("chain up", DemoProcess.Timeout);
        var prefix = demo.Prefix;
        Assert.That(await DemoProcess.NamespacesLeftAsync(prefix), Has.Count.EqualTo(4), "the chain's namespaces exist before the interrupt");

        demo.Interrupt();
        // Teardown is bounded (processes stopped together, a few seconds each at most); the margin is for a loaded machine.
        int exit = await demo.WaitForExitAsync(TimeSpan.FromSeconds(60));
        var output = demo.Output;
        TestContext.Out.WriteLine(output);

        Assert.That(exit, Is.EqualTo(130), output);
        Assert.That(output, Does.Contain("Interrupted: tearing everything down."));
        Assert.That(output, Does.Contain("nothing of this run is left"));
        Assert.That(await DemoProcess.NamespacesLeftAsync(prefix), Is.Empty);
        Assert.That(demo.ProxyPids(), Has.Count.EqualTo(2));
        Assert.That(demo.ProxyPids().Where(pid => Directory.Exists($"/proc/{pid}")), Is.Empty);
    }
}

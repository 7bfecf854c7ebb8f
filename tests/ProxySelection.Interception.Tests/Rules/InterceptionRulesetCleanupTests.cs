using Microsoft.Extensions.Logging;
using ProxySelection.Interception.Rules;

namespace ProxySelection.Interception.Tests.Rules;

/// <summary>Cleanup against scripted tool output: which commands it issues (no kernel).</summary>
[TestFixture]
public sealed class InterceptionRulesetCleanupTests
{
    private const string RawSave = """
        *raw
        :PREROUTING ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :PSEL_QUEUE - [0:0]
        :OTHER - [0:0]
        -A PREROUTING -j PSEL_QUEUE
        -A PREROUTING -i eth9 -j PSEL_QUEUE
        -A PREROUTING -j OTHER
        -A PSEL_QUEUE -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m multiport --dports 80 -j NFQUEUE --queue-num 0 --queue-bypass
        COMMIT
        """;

    [Test]
    public async Task Cleanup_LegacyBackendWithLeftovers_DeletesOnlyOurJumpsAndChains()
    {
        var runner = new ScriptedRunner(legacy: true);
        var rules = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], IPv6 = false }, runner);

        await rules.CleanupAsync().WaitAsync(TimeSpan.FromSeconds(10));

        var iptables = runner.Commands.Where(c => c.StartsWith("iptables -t raw", StringComparison.Ordinal)).ToList();
        Assert.That(iptables, Is.EqualTo(new[]
        {
            "iptables -t raw -D PREROUTING -j PSEL_QUEUE",
            "iptables -t raw -D PREROUTING -i eth9 -j PSEL_QUEUE",
            "iptables -t raw -F PSEL_QUEUE",
            "iptables -t raw -X PSEL_QUEUE",
        }));
        Assert.That(runner.Commands.Any(c => c.StartsWith("nft", StringComparison.Ordinal)), Is.False, "legacy backend: no nft");
        Assert.That(runner.Commands, Has.Some.StartsWith("ip -4 rule del pref 100 fwmark 0x1/0x1 lookup 100"));
        Assert.That(runner.Commands, Has.Some.StartsWith("ip -4 route del local 0.0.0.0/0 dev lo table 100"));
    }

    [Test]
    public void Cleanup_RuleSurvivesDeletion_ThrowsInterceptionRulesException()
    {
        var runner = new ScriptedRunner(legacy: true) { RuleStillThere = true };
        var rules = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], IPv6 = false }, runner);

        Assert.That(async () => await rules.CleanupAsync().WaitAsync(TimeSpan.FromSeconds(10)), Throws.InstanceOf<InterceptionRulesException>());
    }

    [Test]
    public async Task Apply_RestoreFails_LeavesNothingBehindLogsTheRollbackAndThrows()
    {
        var runner = new ScriptedRunner(legacy: true) { FailRestore = true };
        var log = new RecordingLogger();
        var rules = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], IPv6 = false }, runner, log);

        Assert.That(async () => await rules.ApplyAsync().WaitAsync(TimeSpan.FromSeconds(10)), Throws.InstanceOf<InterceptionRulesException>());
        // Cleanup ran before and again after the failed restore.
        Assert.That(runner.Commands.Count(c => c == "iptables -t raw -X PSEL_QUEUE"), Is.EqualTo(2));
        var entry = log.Entries.Single();
        Assert.That((entry.Level, entry.Id.Id), Is.EqualTo((LogLevel.Error, 1011)));
        Assert.That(entry.Exception, Is.InstanceOf<InterceptionRulesException>());
    }

    [Test]
    public async Task ApplyThenRemove_ToolsSucceed_LogsAppliedAndRemovedAtInformation()
    {
        var log = new RecordingLogger();
        var rules = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80, 443], IPv6 = false }, new ScriptedRunner(legacy: true), log);

        await rules.ApplyAsync().WaitAsync(TimeSpan.FromSeconds(10));
        await rules.RemoveAsync().WaitAsync(TimeSpan.FromSeconds(10));

        Assert.That(log.Entries.Select(e => (e.Level, e.Id.Id)), Is.EqualTo(new[] { (LogLevel.Information, 1010), (LogLevel.Information, 1012) }));
        Assert.That(log.Entries.First().Message, Does.Contain("PSEL").And.Contain("80,443"));
    }

    [Test]
    public async Task Cleanup_SetsOfThisPrefixAndAnotherListed_DestroysExactlyThisPrefixesSets()
    {
        var runner = new ScriptedRunner(legacy: true) { Sets = "PSEL_HS4\nPSEL_HS6\nPSEL_TO4\nPSEL_B_HS4\nOTHER\n" };
        var rules = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], IPv6 = false }, runner);

        await rules.CleanupAsync().WaitAsync(TimeSpan.FromSeconds(10));

        Assert.That(runner.Commands.Where(c => c.StartsWith("ipset destroy", StringComparison.Ordinal)),
            Is.EquivalentTo(new[] { "ipset destroy PSEL_HS4", "ipset destroy PSEL_HS6", "ipset destroy PSEL_TO4" }));
        Assert.That(runner.Commands.IndexOf("ipset destroy PSEL_HS4"), Is.GreaterThan(runner.Commands.IndexOf("iptables -t raw -X PSEL_QUEUE")),
            "sets go after the rules that reference them");
    }

    [Test]
    public async Task Apply_NoIpsetTool_RulesWithoutTheHandshakeSetAndAWarning()
    {
        var runner = new ScriptedRunner(legacy: true) { NoIpset = true };
        var log = new RecordingLogger();
        var rules = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], IPv6 = false }, runner, log);

        await rules.ApplyAsync().WaitAsync(TimeSpan.FromSeconds(10));

        Assert.That(runner.Restored, Does.Not.Contain("-m set").And.Contain("-j TPROXY"));
        Assert.That(log.Entries.Select(e => (e.Level, e.Id.Id)), Does.Contain((LogLevel.Warning, 1013)));
    }

    [Test]
    public async Task Apply_IpsetPresent_CreatesTheTimedBoundedSetBeforeTheRulesUsingIt()
    {
        var runner = new ScriptedRunner(legacy: true);
        var rules = new InterceptionRuleset(new InterceptionRulesetOptions { Ports = [80], IPv6 = false, HandshakeSetSeconds = 5, HandshakeSetMaxElements = 1000 }, runner);

        await rules.ApplyAsync().WaitAsync(TimeSpan.FromSeconds(10));

        const string create = "ipset create PSEL_HS4 hash:ip,port,ip family inet timeout 5 maxelem 1000 hashsize 1024";
        Assert.That(runner.Commands, Does.Contain(create));
        Assert.That(runner.Commands.IndexOf(create), Is.LessThan(runner.Commands.IndexOf("iptables-restore --noflush")));
        Assert.That(runner.Restored, Does.Contain("--match-set PSEL_HS4 src,src,dst"));
    }

    private sealed class ScriptedRunner(bool legacy) : ICommandRunner
    {
        public List<string> Commands { get; } = [];

        public bool RuleStillThere { get; init; }

        public bool FailRestore { get; init; }

        public bool NoIpset { get; init; }

        public string Sets { get; init; } = "";

        public string Restored { get; private set; } = "";

        public Task<CommandOutcome> RunAsync(string file, IReadOnlyList<string> args, string? stdin, CancellationToken cancellationToken)
        {
            var line = string.Join(' ', [file, .. args]);
            Commands.Add(line);
            if (file == "iptables-restore")
            {
                Restored += stdin;
            }

            if (file == "ipset" && NoIpset)
            {
                return Task.FromResult(new CommandOutcome(127, "", "ipset: No such file or directory"));
            }

            return Task.FromResult(line switch
            {
                "iptables --version" => Ok(legacy ? "iptables v1.8.9 (legacy)" : "iptables v1.8.9 (nf_tables)"),
                "iptables-save -t raw" => Ok(RawSave),
                "iptables-save -t mangle" => Ok("*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"),
                "iptables-restore --noflush" when FailRestore => new CommandOutcome(1, "", "iptables-restore: line 3 failed"),
                "ipset list -n" => Ok(Sets),
                _ when line.StartsWith("ip -4 rule show", StringComparison.Ordinal) =>
                    Ok(RuleStillThere ? "100:\tfrom all fwmark 0x1/0x1 lookup 100\n" : ""),
                _ when line.StartsWith("ip -4 rule del", StringComparison.Ordinal) || line.StartsWith("ip -4 route del", StringComparison.Ordinal) =>
                    new CommandOutcome(2, "", "RTNETLINK answers: No such file or directory"),
                _ => Ok(""),
            });
        }

        private static CommandOutcome Ok(string stdout) => new(0, stdout, "");
    }
}

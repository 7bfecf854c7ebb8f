using ProxySelection.Negotiation.Simulation;

namespace ProxySelection.Negotiation.Tests.Spec;

/// <summary>
/// Spec Appendix B records the table that <c>proxysel simulate compare</c> prints
/// (<see cref="SetupComparison.Format"/> of <see cref="SetupComparison.Compute"/>); this recomputes it so the draft
/// and the simulator cannot drift. The spec is read from the clone (RepositoryPaths).
/// </summary>
public class SpecAppendixBTests
{
    private const string SpecFile = "draft-proxyselection-mptcp-proxy-selection.md";
    private const string Heading = "## Appendix B.";
    private const string Fence = "```";

    [Test]
    public void AppendixB_Table_EqualsWhatTheSimulatorPrints()
    {
        string expected = Normalize(SetupComparison.Format(SetupComparison.Compute()));
        string recorded = Normalize(RecordedTable());
        TestContext.Out.WriteLine(expected);
        Assert.That(recorded, Is.EqualTo(expected), "regenerate Appendix B with `proxysel simulate compare`");
    }

    [Test]
    public void AppendixB_Table_HasARowPerChainLengthAndMode()
    {
        var rows = RecordedTable().Split('\n').Count(line => line.Contains(" ms | ", StringComparison.Ordinal));
        Assert.That(rows, Is.EqualTo(4 * 3), "1-4 proxies, three modes");
    }

    [Test]
    public void AppendixB_Table_DoesNotDependOnTheSeed()
    {
        // The appendix says the seed only picks keys and ISNs.
        Assert.That(SetupComparison.Format(SetupComparison.Compute(seed: 7)), Is.EqualTo(SetupComparison.Format(SetupComparison.Compute(seed: 1))));
    }

    /// <summary>The first fenced block after the Appendix B heading.</summary>
    private static string RecordedTable()
    {
        string spec = File.ReadAllText(Path.Combine(RepositoryPaths.Spec, SpecFile)).ReplaceLineEndings("\n");
        int heading = spec.IndexOf(Heading, StringComparison.Ordinal);
        if (heading < 0)
        {
            throw new InvalidDataException($"the spec has no '{Heading}' heading");
        }

        int open = spec.IndexOf(Fence, heading, StringComparison.Ordinal);
        int start = open < 0 ? -1 : spec.IndexOf('\n', open) + 1;
        int close = start <= 0 ? -1 : spec.IndexOf("\n" + Fence, start - 1, StringComparison.Ordinal);
        if (close < 0)
        {
            throw new InvalidDataException("Appendix B has no fenced block holding the table");
        }

        return spec[start..(close + 1)];
    }

    private static string Normalize(string text) => text.ReplaceLineEndings("\n").TrimEnd('\n') + "\n";
}

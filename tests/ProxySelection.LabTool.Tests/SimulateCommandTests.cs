using System.Text;

namespace ProxySelection.LabTool.Tests;

public class SimulateCommandTests
{
    [Test]
    public void SimulateCompare_PrintsTheAppendixTable_ExplicitFirstHasOneHolderAtEveryLength()
    {
        using var stdout = new MemoryStream();
        using var stderr = new StringWriter();

        int code = Cli.Run(["simulate", "compare"], stdout, stderr);

        string text = Encoding.UTF8.GetString(stdout.ToArray());
        var explicitFirst = text.Split('\n').Where(l => l.Contains("| explicit first ", StringComparison.Ordinal)).ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr.ToString());
            Assert.That(text, Is.EqualTo(SimulateCommand.CompareTable()));
            Assert.That(explicitFirst, Has.Count.EqualTo(4), "one row per chain length 1-4");
            // Column 4 is "context cold": explicit `first` keeps setup context on exactly one proxy.
            Assert.That(explicitFirst.Select(l => l.Split('|')[3].Trim()), Is.All.EqualTo("1"));
        }
    }
}

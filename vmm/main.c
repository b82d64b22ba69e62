/* amber's entry point (placeholder until the VMM core lands). */
int main(void)
{
    return 0;
}

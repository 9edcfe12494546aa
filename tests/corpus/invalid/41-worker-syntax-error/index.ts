const x: number = ;
export default {};
